"""Samplers pick torchebm-cuda's fused kernels for CUDA chains, and the eager path otherwise.

Runs with every piece installed (the ``integration`` session), so the real ``torchebm.cuda``
is what the samplers find. The CUDA side is exercised without a GPU through fake tensors
(``torch._subclasses.fake_tensor.FakeTensorMode``): they carry a ``cuda`` device, dtype and
shape but no storage, so the samplers' dispatch and one step of their loop run exactly as on
a GPU, with the kernel replaced by its validated eager fallback (a Triton launch needs real
memory). The kernels themselves are checked in ``tests/cuda`` (fallback bit-exact, Triton
interpreter, sm_80/sm_90 compile; fused vs eager on a GPU under ``-m cuda``).
"""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

import torchebm.cuda as tc
from torchebm.core import BaseModel, GaussianModel, HarmonicModel, LinearScheduler
from torchebm.core._base_sampler import SamplerContext
from torchebm.core.errors import ConfigurationError
from torchebm.integrators import EulerMaruyamaIntegrator, LeapfrogIntegrator
from torchebm.integrators._checked import checked_inputs
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics
from torchebm.samplers._backend import resolve_fused

MU = torch.tensor([1.0, -2.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)


def _ctx(
    x: torch.Tensor, n_steps: int = 1, nan_check_every: int = 1, thin: int = 1, recording=False
) -> SamplerContext:
    return SamplerContext(
        model_kwargs={},
        generator=None,
        n_steps=n_steps,
        thin=thin,
        event_shape=tuple(x.shape[1:]),
        nan_check_every=nan_check_every,
        recording=recording,
    )


@pytest.fixture
def fake_mode():
    with FakeTensorMode() as mode:
        yield mode


def test_fake_tensors_stand_in_for_cuda_chains(fake_mode):
    x = torch.empty(8, 3, device="cuda")
    assert isinstance(x, FakeTensor) and x.device.type == "cuda"


@pytest.mark.parametrize(
    ("kernel", "owner"),
    [("fused_langevin_step", "LangevinDynamics"), ("fused_leapfrog_step", "HMC")],
)
def test_auto_resolves_the_installed_kernel_for_float32_cuda_chains(fake_mode, kernel, owner):
    real = getattr(tc, kernel)
    cuda32 = torch.empty(8, 3, device="cuda")
    assert resolve_fused("auto", kernel, cuda32, owner=owner) is real
    assert resolve_fused("fused", kernel, cuda32, owner=owner) is real
    # eager when asked, and for chains the kernels do not take automatically
    assert resolve_fused("eager", kernel, cuda32, owner=owner) is None
    cuda64 = torch.empty(8, 3, device="cuda", dtype=torch.float64)
    assert resolve_fused("auto", kernel, cuda64, owner=owner) is None
    assert resolve_fused("auto", kernel, torch.empty(8, 3), owner=owner) is None
    # "fused" on CPU takes the kernel function, which runs its eager fallback there
    assert resolve_fused("fused", kernel, torch.empty(8, 3), owner=owner) is real


KERNELS = ("fused_langevin_step", "langevin_chain", "fused_leapfrog_step")


def _recording(monkeypatch) -> list:
    """Replace the kernel functions by their eager fallbacks, recording (kernel, device, n)."""
    calls: list = []
    for name in KERNELS:
        real = getattr(tc, name)

        def kernel(*args, _name=name, _real=real, **kwargs):
            n = args[2] if _name == "langevin_chain" else 1
            calls.append((_name, args[0].device.type, n))
            return _real(*args, **kwargs, force="eager")

        monkeypatch.setattr(tc, name, kernel)
    return calls


class Quartic(BaseModel):
    """An energy the kernels do not know (its gradient is given: autograd needs a real GPU
    under fake tensors)."""

    def forward(self, x):
        return (x**4).sum(-1) / 4

    def gradient(self, x, **kwargs):
        return x**3


def _loop(sampler, x, n_steps=30, nan_check_every=10):
    """The sampler's step calls as ``sample()`` makes them (the NaN checks left out), in a
    context with the entry checks that sync off, as ``sample()`` runs its loop."""
    ctx = _ctx(x, n_steps, nan_check_every)
    state = sampler.init_state(x, ctx)
    stride = sampler.steps_per_call(state, ctx)
    i = 0
    with checked_inputs():
        while i < n_steps:
            ctx.i, ctx.n = i, min(stride, n_steps - i)
            state = sampler.step(state, ctx)
            i += ctx.n
    assert state["x"].device.type == "cuda" and state["x"].shape == x.shape
    return stride


def _langevin(model, **kw):
    return LangevinDynamics(model, step_size=0.05, clamp=(-3, 3), **kw)


CASES = {
    # analytic elementwise energy: the whole-chain kernel, one call per NaN check
    "langevin-analytic": (
        lambda: _langevin(HarmonicModel(device="cuda")),
        [("langevin_chain", "cuda", 10)] * 3,
    ),
    # any other energy: the fused update after the model's own gradient, every step
    "langevin-generic": (lambda: _langevin(Quartic()), [("fused_langevin_step", "cuda", 1)] * 30),
    # a scheduled step size cannot be held constant inside one kernel: step by step
    "langevin-scheduled": (
        lambda: _langevin(HarmonicModel(device="cuda"), noise_scale=LinearScheduler(1.0, 0.5, 30)),
        [("fused_langevin_step", "cuda", 1)] * 30,
    ),
    "langevin-eager": (lambda: _langevin(HarmonicModel(device="cuda"), backend="eager"), []),
    "langevin-heun": (lambda: _langevin(HarmonicModel(device="cuda"), integrator="heun"), []),
    "hmc": (
        lambda: HamiltonianMonteCarlo(HarmonicModel(device="cuda"), 0.1, 3),
        [("fused_leapfrog_step", "cuda", 1)] * 30,
    ),
    "hmc-eager": (
        lambda: HamiltonianMonteCarlo(HarmonicModel(device="cuda"), 0.1, 3, backend="eager"),
        [],
    ),
    # a user's subclass of the built-in integrator runs its own steps: the kernels took over
    # (its step/integrate was never called, on the default backend)
    "langevin-user-integrator": (
        lambda: _langevin(HarmonicModel(device="cuda"), integrator=_OwnEulerMaruyama()),
        [],
    ),
    "hmc-user-integrator": (
        lambda: HamiltonianMonteCarlo(
            HarmonicModel(device="cuda"), 0.1, 3, integrator=_OwnLeapfrog()
        ),
        [],
    ),
}


class _OwnEulerMaruyama(EulerMaruyamaIntegrator):
    pass


class _OwnLeapfrog(LeapfrogIntegrator):
    pass


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (
            lambda: LangevinDynamics(
                HarmonicModel(), 0.1, integrator=_OwnEulerMaruyama(), backend="fused"
            ),
            "_OwnEulerMaruyama",
        ),
        (
            lambda: HamiltonianMonteCarlo(
                HarmonicModel(), 0.1, 3, integrator=_OwnLeapfrog(), backend="fused"
            ),
            "_OwnLeapfrog",
        ),
    ],
)
def test_a_forced_fused_backend_refuses_an_integrator_it_would_replace(make, name):
    with pytest.raises(ConfigurationError, match=f"built-in .*got integrator {name}"):
        make()


@pytest.mark.parametrize("case", list(CASES))
def test_samplers_take_the_fused_kernels_on_cuda(monkeypatch, fake_mode, case):
    make, expected = CASES[case]
    calls = _recording(monkeypatch)
    _loop(make(), torch.randn(16, 4, device="cuda"))
    assert calls == expected


def test_the_chain_kernel_stride_follows_checks_and_records(monkeypatch, fake_mode):
    _recording(monkeypatch)
    sampler = _langevin(HarmonicModel(device="cuda"))
    x = torch.randn(16, 4, device="cuda")
    ctx = _ctx(x, 30, 10)
    state = sampler.init_state(x, ctx)
    assert sampler.steps_per_call(state, ctx) == 10
    # a divisor of thin and of the check period
    assert sampler.steps_per_call(state, _ctx(x, 30, 10, thin=4, recording=True)) == 2
    ctx = _ctx(x, 30, 1)
    state = sampler.init_state(x, ctx)
    assert sampler.steps_per_call(state, ctx) == 1  # exact NaN steps: one step per call


def test_cpu_chains_stay_eager_with_the_real_piece_installed(monkeypatch):
    calls = _recording(monkeypatch)
    LangevinDynamics(HarmonicModel(), step_size=0.05).sample(dim=2, n_samples=4, n_steps=3)
    assert calls == []
    # backend="fused" calls the kernel functions, which run their eager fallbacks on CPU
    LangevinDynamics(HarmonicModel(), step_size=0.05, backend="fused").sample(
        dim=2, n_samples=4, n_steps=3
    )
    assert calls == [("langevin_chain", "cpu", 3)]
    calls.clear()
    LangevinDynamics(Quartic(), step_size=0.05, backend="fused").sample(
        dim=2, n_samples=4, n_steps=3
    )
    assert calls == [("fused_langevin_step", "cpu", 1)] * 3


def test_langevin_fused_backend_on_cpu_equals_eager():
    from torchebm.core import DoubleWellModel

    x0 = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
    kw = dict(step_size=0.05, noise_scale=0.8, clamp=(-2.0, 2.0))
    out = {}
    for backend in ("fused", "eager"):
        sampler = LangevinDynamics(DoubleWellModel(), backend=backend, **kw)
        out[backend] = sampler.sample(x=x0, n_steps=30, generator=torch.Generator().manual_seed(1))
    # same draws; the two updates round differently (x - h g as one fused add on the eager
    # path, sigma sqrt(2h) vs sqrt(2 sigma^2 h)): float32 rounding apart after 30 steps
    torch.testing.assert_close(out["fused"], out["eager"], atol=1e-5, rtol=1e-5)
    assert not torch.equal(out["fused"], x0)


def test_hmc_fused_backend_on_cpu_matches_eager():
    model = GaussianModel(MU, COV)
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kw = dict(step_size=0.25, n_leapfrog_steps=5, mass=torch.tensor([2.0, 0.5]))
    out = {}
    for backend in ("fused", "eager"):
        hmc = HamiltonianMonteCarlo(model, backend=backend, **kw)
        out[backend], diag = hmc.sample(
            x=x0, n_steps=20, generator=torch.Generator().manual_seed(1), return_diagnostics=True
        )
        assert diag["acceptance_rate"].mean() > 0.6
    torch.testing.assert_close(out["fused"], out["eager"], atol=1e-10, rtol=1e-10)
