"""The samplers running on torchebm-cuda's Triton kernels, executed by Triton's interpreter.

Collected only by ``test_samplers_on_triton_kernels.py``, which runs this file in a child
pytest with ``TRITON_INTERPRET=1`` (Triton reads it when a kernel is defined). The samplers'
``backend="fused"`` path takes ``torchebm.cuda``'s kernel functions; here they are bound to
``force="triton"``, so the Triton kernels (in-kernel Philox noise, leapfrog kernels) run inside
the samplers' loops on CPU tensors, as they run on a GPU for float32 CUDA chains.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="run by test_samplers_on_triton_kernels"
)

import torchebm.cuda as tc  # noqa: E402
from torchebm.core import GaussianModel, HarmonicModel  # noqa: E402
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics  # noqa: E402


def _bind(monkeypatch, name: str, force: str) -> list:
    real = getattr(tc, name)
    calls: list = []

    def kernel(*args, **kwargs):
        calls.append(force)
        return real(*args, **kwargs, force=force)

    monkeypatch.setattr(tc, name, kernel)
    return calls


def test_langevin_on_the_triton_step_reaches_the_discrete_stationary_law(monkeypatch):
    from torchebm.cuda._backend import resolve_backend

    assert tc.interpreter_enabled() and resolve_backend("triton", torch.zeros(1)) == "triton"
    calls = _bind(monkeypatch, "fused_langevin_step", "triton")
    k, h, n, steps = 4.0, 0.05, 8_000, 40
    sampler = LangevinDynamics(HarmonicModel(k=k), step_size=h, backend="fused")
    x = sampler.sample(
        x=torch.zeros(n, 2), n_steps=steps, generator=torch.Generator().manual_seed(0)
    )
    assert calls == ["triton"] * steps
    # x_n = (1 - hk) x_{n-1} + sqrt(2h) eps from 0: Var x_n = 2h (1 - r^2n) / (1 - r^2)
    r2 = (1 - h * k) ** 2
    var = 2 * h * (1 - r2**steps) / (1 - r2)
    m = 2 * n  # coordinates are independent
    assert abs(x.mean().item()) < 5 * math.sqrt(var / m)
    assert abs(x.var().item() / var - 1) < 5 * math.sqrt(2 / m)
    # the four normals of one Philox call must not be correlated across coordinates
    c = torch.corrcoef(x.T)[0, 1].item()
    assert abs(c) < 5 / math.sqrt(n)


@pytest.mark.parametrize("which", ["harmonic", "gaussian"])
def test_hmc_on_the_triton_leapfrog_equals_its_eager_twin(monkeypatch, which):
    # harmonic: one kernel per trajectory (closed-form gradient); full-covariance Gaussian:
    # one kick-drift kernel per step around the model's gradient
    if which == "harmonic":
        model = HarmonicModel(k=2.0)
    else:
        model = GaussianModel(torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.6], [0.6, 0.8]]))
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    kw = dict(step_size=0.2, n_leapfrog_steps=6, mass=torch.tensor([1.5, 0.7]))
    out = {}
    for force in ("triton", "eager"):
        calls = _bind(monkeypatch, "fused_leapfrog_step", force)
        hmc = HamiltonianMonteCarlo(model, backend="fused", **kw)
        out[force], diag = hmc.sample(
            x=x0, n_steps=15, generator=torch.Generator().manual_seed(1), return_diagnostics=True
        )
        assert calls == [force] * 15
        monkeypatch.undo()
    assert diag["acceptance_rate"].mean() > 0.6
    # float32 with the same momenta and uniforms: the kernels round like the fallback
    assert torch.equal(out["triton"], out["eager"])
    library = HamiltonianMonteCarlo(model, backend="eager", **kw).sample(
        x=x0, n_steps=15, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(out["triton"], library, rtol=1e-5, atol=1e-5)
