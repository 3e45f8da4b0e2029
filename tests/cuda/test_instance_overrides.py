"""An analytic model whose ``gradient`` or ``forward`` is replaced on the instance is not the
library's energy any more: the whole-chain and whole-trajectory kernels (and their eager
fallbacks) must not substitute the class's closed form for it.

``BaseSampler.gradient_fn`` honours an instance ``gradient`` (``"gradient" in vars(model)``);
``torchebm.cuda`` only looked at the class, so ``LangevinDynamics(backend="fused")`` and
``HamiltonianMonteCarlo(backend="fused")`` sampled the class's energy (max error 1.9 / 3.0
against the eager backend after 100 / 50 steps).
"""

import pytest
import torch

import torchebm.cuda as tc
from torchebm.core import DoubleWellModel, HarmonicModel
from torchebm.core.errors import ConfigurationError


def _with_instance_gradient(k: float) -> HarmonicModel:
    m = HarmonicModel(k=1.0)
    m.gradient = lambda x, model_kwargs=None: k * x  # type: ignore[method-assign]
    return m


def _with_instance_forward(k: float) -> DoubleWellModel:
    m = DoubleWellModel()
    m.forward = lambda x: 0.5 * k * x.square().sum(-1)  # type: ignore[method-assign]
    return m


@pytest.mark.parametrize("make", [_with_instance_gradient, _with_instance_forward])
def test_instance_overrides_are_not_supported_energies(make):
    m = make(3.0)
    assert not tc.supports_energy(m)
    with pytest.raises(ConfigurationError, match="energy must be"):
        tc.langevin_chain(torch.zeros(4, 2), m, 3, 0.01, generator=torch.Generator())


def test_leapfrog_uses_the_instance_gradient():
    """Harmonic potential with k = 3 (the instance's), leapfrog written out by hand."""
    k, h, n = 3.0, 0.1, 5
    m = _with_instance_gradient(k)
    gen = torch.Generator().manual_seed(0)
    x, p = torch.randn(6, 2, generator=gen), torch.randn(6, 2, generator=gen)
    xr, pr = x.clone(), p - 0.5 * h * k * x
    for i in range(n):
        xr = xr + h * pr
        pr = pr - (h if i < n - 1 else 0.5 * h) * k * xr
    x1, p1, g1 = tc.fused_leapfrog_step(x, p, m, h, n, force="eager")
    torch.testing.assert_close(x1, xr)
    torch.testing.assert_close(p1, pr)
    torch.testing.assert_close(g1, k * xr)
