"""The samplers running on torchebm-cuda's Triton kernels, executed by Triton's interpreter.

Collected only by ``test_samplers_on_triton_kernels.py``, which runs this file in a child
pytest with ``TRITON_INTERPRET=1`` (Triton reads it when a kernel is defined). The samplers'
``backend="fused"`` path takes ``torchebm.cuda``'s kernel functions; here they are bound to
``force="triton"``, so the Triton kernels (in-kernel Philox noise, leapfrog kernels) run inside
the samplers' loops on CPU tensors, as they run on a GPU for float32 CUDA chains.
"""

from __future__ import annotations

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


def _ula_moments(prec: torch.Tensor, mu: torch.Tensor, h: float, n: int):
    """Exact mean and covariance after n steps of x <- x - h P (x - mu) + sqrt(2h) eps from 0."""
    prec, mu = prec.double(), mu.double()
    a = torch.eye(len(mu), dtype=torch.float64) - h * prec
    an = torch.linalg.matrix_power(a, n)
    # P, A and A^n commute: Cov_n = (P (I - hP/2))^{-1} (I - A^{2n})
    stat = torch.linalg.inv(prec @ (torch.eye(len(mu), dtype=torch.float64) - h * prec / 2))
    return mu - an @ mu, stat @ (torch.eye(len(mu), dtype=torch.float64) - an @ an)


def _check_moments(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> None:
    n = x.shape[0]
    xd = x.double()
    se = (cov.diagonal() / n).sqrt()
    assert ((xd.mean(0) - mean).abs() < 5 * se).all(), (xd.mean(0), mean)
    emp = torch.cov(xd.T)
    # sampling sd of a covariance entry: sqrt((S_ii S_jj + S_ij^2) / n)
    sd = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov**2) / n).sqrt()
    assert ((emp - cov).abs() < 5 * sd).all(), (emp, cov)


def test_langevin_on_the_triton_chain_kernel_has_the_exact_discrete_law(monkeypatch):
    from torchebm.cuda._backend import resolve_backend

    assert tc.interpreter_enabled() and resolve_backend("triton", torch.zeros(1)) == "triton"
    calls = _bind(monkeypatch, "langevin_chain", "triton")
    k, h, n, steps = 4.0, 0.05, 4_000, 40
    sampler = LangevinDynamics(HarmonicModel(k=k), step_size=h, backend="fused")
    x = sampler.sample(
        x=torch.zeros(n, 2), n_steps=steps, generator=torch.Generator().manual_seed(0)
    )
    assert calls == ["triton"] * 4  # ten steps per kernel, up to each NaN check
    mean, cov = _ula_moments(k * torch.eye(2), torch.zeros(2), h, steps)
    _check_moments(x, mean, cov)


def test_langevin_on_the_triton_step_kernel_has_the_exact_discrete_law(monkeypatch):
    # a full-covariance Gaussian has no chain kernel: the model's gradient, then the fused
    # update (noise, step, clamp) in one kernel, every step
    calls = _bind(monkeypatch, "fused_langevin_step", "triton")
    mu = torch.tensor([1.0, -0.5])
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.8]])
    h, n, steps = 0.1, 8_000, 30
    sampler = LangevinDynamics(GaussianModel(mu, cov), step_size=h, backend="fused")
    x = sampler.sample(
        x=torch.zeros(n, 2), n_steps=steps, generator=torch.Generator().manual_seed(0)
    )
    assert calls == ["triton"] * steps
    _check_moments(x, *_ula_moments(torch.linalg.inv(cov), mu, h, steps))


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
