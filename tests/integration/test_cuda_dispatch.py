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
from torchebm.core import GaussianModel, HarmonicModel
from torchebm.core._base_sampler import SamplerContext
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics
from torchebm.samplers._backend import resolve_fused

MU = torch.tensor([1.0, -2.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)


def _ctx(x: torch.Tensor) -> SamplerContext:
    return SamplerContext(
        model_kwargs={}, generator=None, n_steps=1, thin=1, event_shape=tuple(x.shape[1:])
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


def _recording(monkeypatch, name: str) -> list:
    """Replace ``torchebm.cuda.<name>`` by its eager fallback, recording the calls' devices."""
    real = getattr(tc, name)
    calls: list = []

    def kernel(*args, **kwargs):
        calls.append((args[0].device.type, args[0].dtype, tuple(args[0].shape)))
        return real(*args, **kwargs, force="eager")

    monkeypatch.setattr(tc, name, kernel)
    return calls


SAMPLERS = {
    "langevin": (
        "fused_langevin_step",
        lambda m, b: LangevinDynamics(m, 0.05, clamp=(-3, 3), backend=b),
    ),
    "hmc": ("fused_leapfrog_step", lambda m, b: HamiltonianMonteCarlo(m, 0.1, 3, backend=b)),
}


@pytest.mark.parametrize("which", list(SAMPLERS))
def test_samplers_take_the_fused_kernel_on_cuda(monkeypatch, fake_mode, which):
    kernel, make = SAMPLERS[which]
    calls = _recording(monkeypatch, kernel)
    model = HarmonicModel(device="cuda")
    x = torch.randn(16, 4, device="cuda")
    for backend, expect in (("auto", 2), ("eager", 0)):
        calls.clear()
        sampler, ctx = make(model, backend), _ctx(x)
        state = sampler.init_state(x, ctx)
        for _ in range(2):
            state = sampler.step(state, ctx)
        assert calls == [("cuda", torch.float32, (16, 4))] * expect, backend
        assert state["x"].device.type == "cuda" and state["x"].shape == (16, 4)


def test_langevin_with_another_integrator_never_takes_the_kernel(monkeypatch, fake_mode):
    calls = _recording(monkeypatch, "fused_langevin_step")
    x = torch.randn(16, 4, device="cuda")
    heun = LangevinDynamics(HarmonicModel(device="cuda"), step_size=0.05, integrator="heun")
    ctx = _ctx(x)
    heun.step(heun.init_state(x, ctx), ctx)
    assert calls == []


def test_cpu_chains_stay_eager_with_the_real_piece_installed(monkeypatch):
    calls = _recording(monkeypatch, "fused_langevin_step")
    LangevinDynamics(HarmonicModel(), step_size=0.05).sample(dim=2, n_samples=4, n_steps=3)
    assert calls == []
    LangevinDynamics(HarmonicModel(), step_size=0.05, backend="fused").sample(
        dim=2, n_samples=4, n_steps=3
    )
    assert len(calls) == 3


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
