"""An empty batch (B = 0): every Runge-Kutta integrator returns an empty state, the adaptive
ones as the fixed ones do (they raised "step size underflow" or "max_steps exceeded": the error
norm of an empty state is NaN, so no step was ever accepted). The state must be floating-point:
an integer, bool or complex one is a named `TypeError` (it failed deep in the step maths)."""

from __future__ import annotations

import math

import pytest
import torch

import torchebm.integrators as I
from torchebm.integrators import INTEGRATOR_NAMES, get_integrator

RK = ["euler", "heun", "midpoint", "rk4", "rk438", "adaptive_heun", "bosh3", "dopri5", "dopri8"]


def drift(x, t):
    return -x


@pytest.mark.parametrize("name", RK)
@pytest.mark.parametrize("grid", [False, True], ids=["n_steps", "t"])
def test_an_empty_batch_integrates_to_an_empty_state(name, grid):
    x = torch.zeros(0, 3, dtype=torch.float64)
    kw = {"t": torch.linspace(0.0, 1.0, 5)} if grid else {"step_size": 0.25, "n_steps": 4}
    out = get_integrator(name).integrate({"x": x}, drift=drift, **kw)["x"]
    assert out.shape == (0, 3)
    assert out.dtype == torch.float64


@pytest.mark.parametrize("name", ["adaptive_heun", "bosh3", "dopri5", "dopri8"])
def test_the_empty_batch_path_leaves_a_full_batch_alone(name):
    """dx/dt = -x from x0 over [0, 1]: x0 * exp(-1), the closed form."""
    x0 = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    solver = getattr(I, INTEGRATOR_NAMES[name])(atol=1e-7, rtol=1e-7)
    got = solver.integrate({"x": x0}, drift=drift, t=torch.tensor([0.0, 1.0]))["x"]
    want = torch.tensor([[v * math.exp(-1.0) for v in (1.0, -2.0, 0.5)]], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
@pytest.mark.parametrize("name", ["rk4", "dopri5", "euler"])
def test_a_state_that_is_not_floating_point_is_a_named_type_error(name, dtype):
    x = torch.ones(2, 3).to(dtype)
    with pytest.raises(TypeError, match=rf"state\['x'\] must have a floating-point dtype.*{dtype}"):
        get_integrator(name).integrate({"x": x}, 0.1, 2, drift=drift)
    with pytest.raises(TypeError, match=r"state\['x'\]"):
        get_integrator(name).step({"x": x}, 0.1, drift=drift)
