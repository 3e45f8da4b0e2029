"""LangevinDynamics: exact moments of the discrete chain, noise semantics, options, seed forms."""

from __future__ import annotations

import math
import types

import pytest
import torch
from samplers_helpers import gaussian_tolerance

import torchebm.samplers._backend as backend_mod
from torchebm.core import (
    BaseModel,
    CosineScheduler,
    DoubleWellModel,
    GaussianModel,
    HarmonicModel,
    LinearScheduler,
)
from torchebm.core._module import _WARNED
from torchebm.core.errors import MissingDependencyError, NonFiniteError
from torchebm.integrators import EulerMaruyamaIntegrator
from torchebm.samplers import LangevinDynamics

MU = torch.tensor([1.0, -2.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)


def ula_moments(eta, sigma, n, m0, c0):
    r"""Exact mean/covariance after n steps of x <- x - eta P (x - mu) + sigma sqrt(2 eta) xi."""
    eye = torch.eye(2, dtype=torch.float64)
    a = eye - eta * torch.linalg.inv(COV)
    stat = 2 * eta * sigma**2 * torch.linalg.inv(eye - a @ a)
    an = torch.linalg.matrix_power(a, n)
    mean = MU + an @ (m0 - MU)
    cov = an @ c0 @ an.T + stat - an @ stat @ an.T
    return mean, cov


def assert_moments(x, mean, cov, z=5.0):
    x = x.double()
    n = x.shape[0]
    se_mean = (torch.diagonal(cov) / n).sqrt()
    assert ((x.mean(0) - mean).abs() <= z * se_mean).all(), (x.mean(0), mean)
    d = torch.diagonal(cov)
    se_cov = ((d[:, None] * d[None, :] + cov.square()) / n).sqrt()
    emp = torch.cov(x.T, correction=0)
    assert ((emp - cov).abs() <= z * se_cov).all(), (emp, cov)


@pytest.mark.parametrize("sigma", [1.0, 0.6])
def test_moments_match_the_exact_discrete_chain(sigma):
    # the ULA chain on a Gaussian stays Gaussian with closed-form moments: this pins the
    # update x - eta grad E + sigma sqrt(2 eta) xi exactly (including noise_scale), with a
    # tolerance of 5 standard errors for 20000 independent chains
    eta, n = 0.1, 20
    model = GaussianModel(MU.float(), COV.float())
    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(20000, 2)
    out = LangevinDynamics(model, step_size=eta, noise_scale=sigma).sample(
        x=x0, n_steps=n, generator=g
    )
    zero = torch.zeros(2, dtype=torch.float64)
    mean, cov = ula_moments(eta, sigma, n, zero, torch.zeros(2, 2, dtype=torch.float64))
    assert_moments(out, mean, cov)
    # the test can fail: the target moments (and the moments at twice the steps) are outside
    with pytest.raises(AssertionError):
        assert_moments(out, MU, COV * sigma**2)
    with pytest.raises(AssertionError):
        assert_moments(out, *ula_moments(eta, sigma, 2 * n, zero, torch.zeros_like(COV)))


def test_recovers_the_target_gaussian_at_small_step():
    eta, n, chains = 0.02, 400, 4000
    model = GaussianModel(MU.float(), COV.float())
    g = torch.Generator().manual_seed(1)
    x0 = MU.float() + torch.randn(chains, 2, generator=g)
    out = LangevinDynamics(model, step_size=eta).sample(x=x0, n_steps=n, generator=g).double()
    tol_mean, tol_var = gaussian_tolerance(chains)
    assert (out.mean(0) - MU).abs().max() < tol_mean * 1.0 + 0.01
    emp = torch.cov(out.T, correction=0)
    # discretisation bias of the covariance is about eta/2 here; sampling error on top
    assert (emp - COV).abs().max() < tol_var * COV.abs().max() + eta
    print(f"Langevin eta={eta}: mean {out.mean(0).tolist()} cov {emp.flatten().tolist()}")


class ConstantGradient(BaseModel):
    def forward(self, x):
        return 3.0 * x.sum(-1)


def test_one_step_distribution_is_x_minus_eta_grad_plus_sigma_sqrt_2eta_noise():
    eta, sigma, n = 0.04, 0.5, 20000
    sampler = LangevinDynamics(ConstantGradient(), step_size=eta, noise_scale=sigma)
    out = sampler.sample(x=torch.zeros(n, 1), n_steps=1, generator=torch.Generator().manual_seed(2))
    tol_mean, tol_var = gaussian_tolerance(n)
    std = sigma * math.sqrt(2 * eta)
    assert abs(out.mean().item() + 3.0 * eta) < tol_mean * std
    assert abs(out.var().item() / std**2 - 1) < tol_var


def test_schedulers_drive_step_size_and_noise_scale():
    step = CosineScheduler(start_value=3e-2, end_value=5e-3, n_steps=100)
    noise = CosineScheduler(start_value=3e-1, end_value=1e-2, n_steps=100)
    sampler = LangevinDynamics(HarmonicModel(), step_size=step, noise_scale=noise)
    assert sampler.step_size == pytest.approx(3e-2)
    sampler.sample(dim=2, n_samples=2, n_steps=100, reset_schedulers=False)
    assert sampler.step_size == pytest.approx(5e-3) and sampler.noise_scale == pytest.approx(1e-2)
    sampler.step_size = 0.2  # a float installs a constant schedule
    assert sampler.step_size == 0.2
    with pytest.raises(ValueError, match="noise_scale"):
        sampler.noise_scale = 0.0


def test_clamp_bounds_the_chains():
    sampler = LangevinDynamics(DoubleWellModel(), step_size=0.05, clamp=(-0.5, 0.25))
    traj = sampler.sample(dim=3, n_samples=50, n_steps=20, return_trajectory=True)
    assert traj.min() >= -0.5 and traj.max() <= 0.25
    for bad in [(1.0, 1.0), (2.0, -1.0)]:
        with pytest.raises(ValueError, match="clamp"):
            LangevinDynamics(HarmonicModel(), clamp=bad)
    with pytest.raises(TypeError, match="clamp"):
        LangevinDynamics(HarmonicModel(), clamp=1.0)


def test_integrator_choice():
    assert isinstance(LangevinDynamics(HarmonicModel()).integrator, EulerMaruyamaIntegrator)
    heun = LangevinDynamics(HarmonicModel(), step_size=0.1, integrator="heun")
    assert type(heun.integrator).__name__ == "HeunIntegrator"
    out = heun.sample(dim=2, n_samples=4, n_steps=3)
    assert torch.isfinite(out).all()
    with pytest.raises(TypeError, match="LangevinDynamics"):
        LangevinDynamics(HarmonicModel(), integrator="rk4")
    with pytest.raises(ValueError, match="Unknown integrator"):
        LangevinDynamics(HarmonicModel(), integrator="nope")
    with pytest.raises(ValueError, match="dtype"):
        LangevinDynamics(HarmonicModel(), integrator=EulerMaruyamaIntegrator(dtype=torch.float64))


def test_decay_is_stored_and_ignored_as_in_089_and_says_so():
    # 0.8.9 stored decay and never used it; a ConfigurationError broke its users' scripts
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    plain = LangevinDynamics(HarmonicModel(), decay=0.0)
    with pytest.warns(UserWarning, match=r"decay=0.1\) has no effect, as in torchebm 0.8.9"):
        decayed = LangevinDynamics(HarmonicModel(), decay=0.1)
    assert decayed.decay == 0.1
    runs = [
        s.sample(x, n_steps=5, generator=torch.Generator().manual_seed(1)) for s in (plain, decayed)
    ]
    assert torch.equal(*runs)
    with pytest.raises(TypeError, match="decay must be a number"):
        LangevinDynamics(HarmonicModel(), decay="0.1")


def test_seed_forms_keep_working():
    model = GaussianModel(mean=torch.zeros(2), cov=torch.eye(2))
    sampler = LangevinDynamics(model=model, step_size=0.01, device="cpu")
    assert sampler.sample(x=torch.randn(500, 2), n_steps=100).shape == (500, 2)
    assert sampler.sample(dim=2, n_samples=1000, n_steps=100).shape == (1000, 2)
    # the getting-started page: a tanh MLP energy, step_size=10, n_steps=60 for CD
    neural = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    class NeuralEnergy(BaseModel):
        def __init__(self):
            super().__init__()
            self.network = neural

        def forward(self, x):
            return self.network(x).squeeze(-1)

    energy = NeuralEnergy()
    key = "LangevinDynamics.energy_function"
    _WARNED.discard(key)
    with pytest.warns(DeprecationWarning, match="model="):
        old = LangevinDynamics(energy_function=energy, step_size=10.0, noise_scale=0.1, n_steps=60)
    assert old.model is energy and old.n_steps == 60
    assert old.sample(x=torch.zeros(3, 2), return_trajectory=True).shape == (3, 60, 2)
    with pytest.raises(TypeError, match="both"):
        LangevinDynamics(model, energy_function=model)
    with pytest.raises(TypeError, match="requires a model"):
        LangevinDynamics(step_size=0.1)


def test_backend_validation_and_missing_package(monkeypatch):
    with pytest.raises(ValueError, match="backend"):
        LangevinDynamics(HarmonicModel(), backend="triton")
    with pytest.raises(ValueError, match="Euler-Maruyama"):
        LangevinDynamics(HarmonicModel(), integrator="heun", backend="fused")
    monkeypatch.setattr(backend_mod.importlib.util, "find_spec", lambda name: None)
    sampler = LangevinDynamics(HarmonicModel(), backend="fused")
    with pytest.raises(MissingDependencyError, match="pip install torchebm-cuda"):
        sampler.sample(dim=2, n_samples=2, n_steps=1)
    # auto never needs the package on CPU
    LangevinDynamics(HarmonicModel()).sample(dim=2, n_samples=2, n_steps=1)


def _fake_cuda(calls):
    def fused_langevin_step(
        x, grad, step_size, noise_scale, clamp=None, noise=None, generator=None, out=None
    ):
        calls.append((step_size, noise_scale, clamp))
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        new = x - step_size * grad + noise_scale * math.sqrt(2 * step_size) * noise
        new = new if clamp is None else new.clamp(*clamp)
        return new if out is None else out.copy_(new)

    return types.SimpleNamespace(fused_langevin_step=fused_langevin_step)


def test_fused_backend_dispatches_the_update(monkeypatch):
    calls = []
    monkeypatch.setattr(backend_mod, "_cuda_module", lambda: _fake_cuda(calls))
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    kw = dict(step_size=0.1, noise_scale=0.7, clamp=(-1.0, 1.0))
    fused = LangevinDynamics(HarmonicModel(), backend="fused", **kw).sample(
        x=x0, n_steps=4, generator=torch.Generator().manual_seed(1)
    )
    assert calls == [(0.1, 0.7, (-1.0, 1.0))] * 4
    eager = LangevinDynamics(HarmonicModel(), backend="eager", **kw).sample(
        x=x0, n_steps=4, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(fused, eager)
    calls.clear()
    LangevinDynamics(HarmonicModel(), **kw).sample(x=x0, n_steps=2)  # auto on CPU: eager
    assert calls == []


def _fake_cuda_with_chain(calls):
    """A torchebm.cuda stand-in with the whole-chain kernel for analytic energies."""
    step = _fake_cuda(calls).fused_langevin_step

    def langevin_chain(
        x, energy, n_steps, step_size, noise_scale=1.0, clamp=None, generator=None,
        check_finite=True,
    ):  # fmt: skip
        calls.append(("chain", n_steps))
        assert check_finite is False  # the sampler runs its own NaN checks
        for _ in range(n_steps):
            x = step(x, energy.gradient(x), step_size, noise_scale, clamp, generator=generator)
            calls.pop()
        return x

    def supports_energy(model):
        return type(model) in (HarmonicModel, DoubleWellModel)

    return types.SimpleNamespace(
        fused_langevin_step=step, langevin_chain=langevin_chain, supports_energy=supports_energy
    )


def test_whole_chain_kernel_runs_up_to_each_nan_check(monkeypatch):
    calls = []
    monkeypatch.setattr(backend_mod, "_cuda_module", lambda: _fake_cuda_with_chain(calls))
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    kw = dict(step_size=0.1, noise_scale=0.7, clamp=(-1.0, 1.0))

    def run(backend, **skw):
        sampler = LangevinDynamics(HarmonicModel(), backend=backend, **kw)
        return sampler.sample(x=x0, generator=torch.Generator().manual_seed(1), **skw)

    eager = run("eager", n_steps=25)
    assert calls == []
    torch.testing.assert_close(run("fused", n_steps=25), eager)
    assert calls == [("chain", 10), ("chain", 10), ("chain", 5)]
    calls.clear()
    torch.testing.assert_close(run("fused", n_steps=25, nan_check_every=1), eager)
    assert calls == [("chain", 1)] * 25
    calls.clear()
    # recorded rows every thin = 4 steps and checks every 10: calls of gcd(4, 10) = 2 steps
    traj = run("fused", n_steps=24, thin=4, return_trajectory=True)
    torch.testing.assert_close(traj, run("eager", n_steps=24, thin=4, return_trajectory=True))
    assert calls == [("chain", 2)] * 12
    calls.clear()
    # per-step restarts, schedules and energies without a kernel: the per-step update
    run("fused", n_steps=5, nan_policy="resample")
    assert calls == [(0.1, 0.7, (-1.0, 1.0))] * 5
    calls.clear()
    sampler = LangevinDynamics(
        HarmonicModel(), backend="fused", step_size=LinearScheduler(0.1, 0.05, 5)
    )
    sampler.sample(x=x0, n_steps=5)
    assert len(calls) == 5 and all(c[0] != "chain" for c in calls)
    calls.clear()
    LangevinDynamics(GaussianModel(MU, COV), backend="fused").sample(x=x0.double(), n_steps=3)
    assert len(calls) == 3 and all(c[0] != "chain" for c in calls)


def test_whole_chain_kernel_reports_the_same_nan_windows(monkeypatch):
    calls = []
    monkeypatch.setattr(backend_mod, "_cuda_module", lambda: _fake_cuda_with_chain(calls))
    # step 0.5 is unstable for the double well (x - 1 grows 7-fold per step near its minimum):
    # chains from 3 overflow at step 4, the chain from 1 + 1e-6 a few steps later
    x0 = torch.full((4, 2), 3.0)
    x0[2] = 1.0 + 1e-6
    errs = {}
    for backend in ("fused", "eager"):
        for every in (10, 1):
            sampler = LangevinDynamics(
                DoubleWellModel(), step_size=0.5, backend=backend, nan_policy="raise"
            )
            with pytest.raises(NonFiniteError) as info:
                sampler.sample(
                    x=x0, n_steps=60, nan_check_every=every,
                    generator=torch.Generator().manual_seed(0),
                )  # fmt: skip
            errs[backend, every] = (info.value.indices, info.value.windows)
    assert any(c[0] == "chain" for c in calls)
    assert errs["fused", 10] == errs["eager", 10]
    assert errs["fused", 1] == errs["eager", 1]
    indices, windows = errs["eager", 1]
    assert indices == [0, 1, 2, 3] and all(lo == hi for lo, hi in windows)  # exact steps
    assert windows[0] == (4, 4) and windows[2][0] > 4


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_backend_on_cuda_matches_eager_statistics():
    model = HarmonicModel(device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    x = LangevinDynamics(model, step_size=0.05, device="cuda").sample(
        dim=2, n_samples=20000, n_steps=200, generator=g
    )
    stat = 1 / (1 - 0.05 / 2)  # exact ULA stationary variance for k = 1
    assert x.is_cuda and abs(x.var().item() / stat - 1) < 0.05


@pytest.mark.parametrize("clamp", [None, (-1.5, 1.5)])
def test_in_place_updates_never_touch_the_callers_chains(clamp):
    """From the second step on the chains are updated in place: the result must equal the
    plain Euler-Maruyama integrator bit for bit, and the caller's ``x`` must stay as it was."""
    from torchebm.core import GaussianModel

    model = GaussianModel(torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.3], [0.3, 0.5]]))
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    keep = x0.clone()

    class PlainEM(EulerMaruyamaIntegrator):  # not the exact default type: generic path
        pass

    fast = LangevinDynamics(model, step_size=0.05, noise_scale=0.7, clamp=clamp)
    slow = LangevinDynamics(
        model, step_size=0.05, noise_scale=0.7, clamp=clamp, integrator=PlainEM()
    )
    kw = {"x": x0, "n_steps": 7, "return_trajectory": True}
    a = fast.sample(**kw, generator=torch.Generator().manual_seed(3))
    b = slow.sample(**kw, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a[:, 0], a[:, 1])
    assert torch.equal(x0, keep)
    final = fast.sample(x=x0, n_steps=7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(final, a[:, -1]) and torch.equal(x0, keep)


@pytest.mark.parametrize("integrator", ["heun", "backward_euler_maruyama"])
def test_a_gradient_that_is_a_view_of_x_is_not_negated_in_place(integrator):
    # E = |x|^2 / 2 with gradient returned as x.view(...): negating it in place wrote -x into
    # the caller's x and gave Heun 1 - h - ... = -0.995 instead of 1 - h + h^2/2
    class ViewGradient(BaseModel):
        def forward(self, x):
            return 0.5 * x.square().sum(1)

        def gradient(self, x, model_kwargs=None):
            return x.view(x.shape)

    x = torch.ones(3, 2, dtype=torch.float64)
    sampler = LangevinDynamics(
        ViewGradient(), 0.1, 1e-12, integrator=integrator, dtype=torch.float64
    )
    out = sampler.sample(x=x, n_steps=1)
    assert torch.equal(x, torch.ones(3, 2, dtype=torch.float64))
    if integrator == "heun":  # x - h x + h^2 x / 2 (the noise-free Heun step)
        assert torch.allclose(out, torch.full((3, 2), 0.905, dtype=torch.float64))
    else:  # the implicit step x' = x - h x', solved by fixed-point iteration: ~ x / (1 + h)
        assert torch.allclose(out, torch.full((3, 2), 1 / 1.1, dtype=torch.float64), atol=1e-6)
