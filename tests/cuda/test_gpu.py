"""Fused kernels against the eager path on a real GPU (skipped without CUDA)."""

import importlib.util
import math

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed"),
]

import torchebm.cuda as tc  # noqa: E402
from torchebm.core import DoubleWellModel, GaussianModel, HarmonicModel  # noqa: E402
from torchebm.core.errors import ConfigurationError  # noqa: E402

DEV = "cuda"
H, S = 0.013, 0.7
TOL = {
    torch.float32: dict(rtol=1e-6, atol=1e-6),
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    torch.float16: dict(rtol=1e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=8e-3, atol=8e-3),
}


def _gauss():
    return GaussianModel(
        torch.tensor([0.5, -1.0, 2.0]), torch.diag(torch.tensor([0.5, 1.0, 2.0])), device=DEV
    )


def _energies():
    return [HarmonicModel(k=2.5), DoubleWellModel(1.5, 0.8), _gauss()]


ENERGY_NAMES = ["harmonic", "double_well", "gaussian"]


def test_is_available():
    assert tc.is_available()


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("shape", [(1, 1), (257, 33), (4096, 128)])
def test_step_matches_eager_with_supplied_noise(dtype, shape):
    g = torch.Generator(DEV).manual_seed(0)
    x, grad, eps = (torch.randn(shape, generator=g, device=DEV).to(dtype) for _ in range(3))
    for clamp in (None, (-0.5, 0.75)):
        k = tc.fused_langevin_step(x, grad, H, S, clamp=clamp, noise=eps)  # auto: kernel
        e = tc.fused_langevin_step(x, grad, H, S, clamp=clamp, noise=eps, force="eager")
        torch.testing.assert_close(k, e, **TOL[dtype])


def test_step_in_place_non_contiguous_and_nan():
    x, grad, eps = (torch.randn(64, 48, device=DEV) for _ in range(3))
    ref = tc.fused_langevin_step(x, grad, H, S, clamp=(-1, 1), noise=eps, force="eager")
    xx = x.clone()
    assert tc.fused_langevin_step(xx, grad, H, S, clamp=(-1, 1), noise=eps, out=xx) is xx
    torch.testing.assert_close(xx, ref, **TOL[torch.float32])
    kt = tc.fused_langevin_step(x.t(), grad.t(), H, S, clamp=(-1, 1), noise=eps.t())
    torch.testing.assert_close(kt, ref.t(), **TOL[torch.float32])
    x[3, 5] = math.nan
    k = tc.fused_langevin_step(x, grad, H, S, clamp=(-1, 1), noise=eps)
    assert torch.isnan(k[3, 5]) and int(torch.isnan(k).sum()) == 1


def test_in_kernel_noise_is_standard_normal():
    n = 1_000_003
    z = torch.zeros(n, 1, device=DEV)
    eps = tc.fused_langevin_step(z, z, 0.5, 1.0, generator=torch.Generator(DEV).manual_seed(1))
    eps = eps.flatten().double()
    assert abs(eps.mean().item()) < 5 / math.sqrt(n)
    assert abs(eps.var().item() - 1) < 5 * math.sqrt(2 / n)
    kurt = ((eps - eps.mean()) ** 4).mean().item() / eps.var().item() ** 2
    assert abs(kurt - 3) < 5 * math.sqrt(24 / n)
    n4 = (n + 3) // 4
    corr = torch.corrcoef(eps[: 4 * (n4 - 1)].reshape(4, n4 - 1))
    assert (corr - torch.eye(4, device=DEV, dtype=corr.dtype)).abs().max() < 5 / math.sqrt(n4)


def test_generator_semantics_on_cuda():
    z = torch.zeros(1000, 4, device=DEV)
    gen, twin = torch.Generator(DEV).manual_seed(5), torch.Generator(DEV).manual_seed(5)
    before = torch.cuda.get_rng_state()
    a = tc.fused_langevin_step(z, z, 0.5, generator=gen)
    assert torch.equal(torch.cuda.get_rng_state(), before)
    torch.randint(0, 2**63 - 1, (1,), generator=twin, device=DEV, dtype=torch.int64)
    assert torch.equal(gen.get_state(), twin.get_state())
    b = tc.fused_langevin_step(z, z, 0.5, generator=torch.Generator(DEV).manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(
        tc.fused_langevin_step(z, z, 0.5, seed=11), tc.fused_langevin_step(z, z, 0.5, seed=11)
    )
    with pytest.raises(ConfigurationError, match="generator must be on the device of x"):
        tc.fused_langevin_step(z, z, 0.5, generator=torch.Generator())


@pytest.mark.parametrize("which", range(3), ids=ENERGY_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_chain_matches_eager_with_supplied_noise(which, dtype):
    model = _energies()[which]
    g = torch.Generator(DEV).manual_seed(0)
    x = torch.randn(1000, 3, generator=g, device=DEV).to(dtype)
    noise = torch.randn(13, 1000, 3, generator=g, device=DEV)
    for clamp in (None, (-1.0, 1.5)):
        k = tc.langevin_chain(x, model, 13, H, S, clamp=clamp, noise=noise)
        e = tc.langevin_chain(x, model, 13, H, S, clamp=clamp, noise=noise, force="eager")
        torch.testing.assert_close(k, e, rtol=1e-5, atol=1e-5)


def test_fused_and_eager_chains_agree_in_distribution():
    # same target, independent noise: both must reach the discrete stationary law
    k, h, n = 4.0, 0.05, 200_000
    var = 1 / (k * (1 - h * k / 2))
    for force in ("triton", "eager"):
        x = tc.langevin_chain(
            torch.zeros(n, 2, device=DEV), HarmonicModel(k=k), 80, h,
            generator=torch.Generator(DEV).manual_seed(3), force=force,
        )  # fmt: skip
        assert abs(x.mean().item()) < 5 * math.sqrt(var / (2 * n)), force
        assert abs(x.var().item() - var) < 5 * var * math.sqrt(2 / (2 * n)), force
    # step-by-step fused loop with the model's autograd-free gradient, too
    model = HarmonicModel(k=k)
    x = torch.zeros(n, 2, device=DEV)
    gen = torch.Generator(DEV).manual_seed(4)
    for _ in range(80):
        x = tc.fused_langevin_step(x, model.gradient(x), h, generator=gen, out=x)
    assert abs(x.var().item() - var) < 5 * var * math.sqrt(2 / (2 * n))


@pytest.mark.parametrize("mass", [None, 2.0, [1.0, 2.0, 4.0]], ids=["none", "scalar", "event"])
def test_leapfrog_kernels_match_eager(mass):
    if isinstance(mass, list):
        mass = torch.tensor(mass, device=DEV)
    g = torch.Generator(DEV).manual_seed(1)
    x = torch.randn(500, 3, generator=g, device=DEV)
    p = torch.randn(500, 3, generator=g, device=DEV)
    for model in _energies():
        for fn in (model, model.gradient):
            k = tc.fused_leapfrog_step(x, p, fn, 0.05, 10, mass=mass)
            e = tc.fused_leapfrog_step(x, p, fn, 0.05, 10, mass=mass, force="eager")
            for a, b in zip(k, e):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_graphed_loop_equals_the_eager_loop_for_a_deterministic_step():
    model = DoubleWellModel()

    def step(x):
        return tc.fused_langevin_step(x, model.gradient(x), 0.01, noise_scale=0.0)

    x0 = torch.randn(256, 8, device=DEV)
    ref = x0
    for _ in range(37):
        ref = step(ref)
    out = tc.graphed_loop(step, x0, 37, steps_per_graph=8)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_graphed_langevin_is_reproducible_and_has_the_right_law():
    model, k, h, n = HarmonicModel(k=4.0), 4.0, 0.05, 100_000

    def run():
        gen = torch.Generator(DEV).manual_seed(0)

        def step(x):
            return tc.fused_langevin_step(x, model.gradient(x), h, generator=gen)

        return tc.graphed_loop(step, torch.zeros(n, 2, device=DEV), 80, generator=gen)

    a, b = run(), run()
    assert torch.equal(a, b)
    var = 1 / (k * (1 - h * k / 2))
    assert abs(a.var().item() - var) < 5 * var * math.sqrt(2 / (2 * n))


def test_compiled_step_on_cuda_uses_the_eager_maths():
    model = HarmonicModel(k=2.0)

    def step(x, eps):
        return tc.fused_langevin_step(x, model.gradient(x), 0.05, 0.8, noise=eps)

    compiled = torch.compile(step)
    x, eps = torch.randn(64, 8, device=DEV), torch.randn(64, 8, device=DEV)
    torch.testing.assert_close(compiled(x, eps), step(x, eps), rtol=1e-6, atol=1e-6)
