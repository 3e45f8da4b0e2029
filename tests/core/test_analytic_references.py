"""Analytic energies against hand-written formulas: energy, `gradient` and `gradient_function`.

The reference energies below are written out from the textbook definitions (numpy for the
Gaussian's precision), independently of the library; their gradients are autograd of those
formulas. Parameters are away from their defaults (non-diagonal covariance, ``b != 1``,
``a != 1``, ``d = 4``) so that a term that only vanishes at the defaults is still checked.
"""

import math

import numpy as np
import pytest
import torch

from torchebm.core import (
    AckleyModel,
    BoothModel,
    DoubleWellModel,
    GaussianModel,
    HarmonicModel,
    HimmelblauModel,
    RastriginModel,
    RosenbrockModel,
    StyblinskiTangModel,
)

F64 = torch.float64
MEAN = [0.5, -1.0, 2.0]
COV = [[2.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 0.5]]
PREC = torch.tensor(np.linalg.inv(np.array(COV)), dtype=F64)


def gaussian(x):
    d = x - torch.tensor(MEAN, dtype=F64)
    return 0.5 * torch.einsum("bi,ij,bj->b", d, PREC, d)


def rosenbrock(x, a, b):
    return sum((a - x[:, i]) ** 2 + b * (x[:, i + 1] - x[:, i] ** 2) ** 2 for i in range(3))


def ackley(x, a, b, c):
    n = x.shape[1]
    r = torch.sqrt((x**2).sum(1) / n)
    return -a * torch.exp(-b * r) - torch.exp(torch.cos(c * x).sum(1) / n) + a + math.e


# (model, reference energy, event dimension)
CASES = {
    "gaussian": (
        lambda: GaussianModel(torch.tensor(MEAN, dtype=F64), torch.tensor(COV, dtype=F64), F64),
        gaussian,
        3,
    ),
    "double_well": (
        lambda: DoubleWellModel(barrier_height=1.5, b=1.3),
        lambda x: 1.5 * ((x**2 - 1.69) ** 2).sum(1),
        3,
    ),
    "harmonic": (lambda: HarmonicModel(k=2.5), lambda x: 1.25 * (x**2).sum(1), 3),
    "rastrigin": (
        lambda: RastriginModel(a=7.0),
        lambda x: 21.0 + (x**2 - 7.0 * torch.cos(2 * math.pi * x)).sum(1),
        3,
    ),
    "ackley": (
        lambda: AckleyModel(a=15.0, b=0.3, c=1.7),
        lambda x: ackley(x, 15.0, 0.3, 1.7),
        3,
    ),
    "rosenbrock": (
        lambda: RosenbrockModel(a=1.5, b=7.0),
        lambda x: rosenbrock(x, 1.5, 7.0),
        4,
    ),
    "booth": (
        BoothModel,
        lambda x: (x[:, 0] + 2 * x[:, 1] - 7) ** 2 + (2 * x[:, 0] + x[:, 1] - 5) ** 2,
        2,
    ),
    "himmelblau": (
        HimmelblauModel,
        lambda x: (x[:, 0] ** 2 + x[:, 1] - 11) ** 2 + (x[:, 0] + x[:, 1] ** 2 - 7) ** 2,
        2,
    ),
    "styblinski_tang": (
        StyblinskiTangModel,
        lambda x: 0.5 * (x**4 - 16 * x**2 + 5 * x).sum(1),
        3,
    ),
}


def points(d: int) -> torch.Tensor:
    return 1.5 * torch.randn(8, d, dtype=F64, generator=torch.Generator().manual_seed(3))


def reference_gradient(energy, x):
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(energy(xg).sum(), xg)
    return g


@pytest.mark.parametrize("name", sorted(CASES))
def test_energy_gradient_and_gradient_function_match_the_written_out_formula(name):
    make, energy, d = CASES[name]
    model = make().to(F64)
    x = points(d)
    torch.testing.assert_close(model(x), energy(x), rtol=1e-10, atol=1e-10)
    want = reference_gradient(energy, x)
    torch.testing.assert_close(model.gradient(x), want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.gradient_function()(x), want, rtol=1e-10, atol=1e-10)
    # one sample (d,), as samplers and users pass it
    torch.testing.assert_close(model.gradient(x[0]), want[0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["gaussian", "double_well", "rosenbrock", "styblinski_tang"])
def test_an_input_of_another_dtype_is_cast_and_gets_the_same_gradient(name):
    """A float32 input to a model built in float64: the gradient comes back in float32, equal
    to the float64 reference to float32 rounding (`GaussianModel` casts the input to its
    buffers' dtype and back, the others compute in the input's dtype)."""
    make, energy, d = CASES[name]
    model = make().to(F64)
    x = points(d)
    want = reference_gradient(energy, x.float().double())
    for g in (model.gradient(x.float()), model.gradient_function()(x.float())):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g.double(), want, rtol=1e-6, atol=1e-5)
