"""The Triton kernels themselves, run on CPU by Triton's interpreter.

These tests need ``TRITON_INTERPRET=1`` in the environment before ``triton`` is imported, so
they are skipped in a normal pytest process; ``test_interpret_runner.py`` runs this file in a
child pytest with the variable set (or run it directly:
``TRITON_INTERPRET=1 pytest tests/cuda/test_triton_interpret.py``). The interpreter is slow:
sizes are tiny.

Interpreter limit, from triton's numpy emulation (not from the kernels): float32 -> bfloat16
truncates instead of rounding to nearest, so bfloat16 results may differ by one bfloat16 ulp.
Float64 results are exact: the kernels turn their float arguments into float64 tensors
(returned as bare Python floats, the interpreter rounded them to float32).
"""

import importlib.util
import math
import os

import pytest
import torch

pytestmark = [
    pytest.mark.triton_interpret,
    pytest.mark.skipif(
        os.environ.get("TRITON_INTERPRET") != "1" or importlib.util.find_spec("triton") is None,
        reason="needs TRITON_INTERPRET=1 set before triton is imported (see test_interpret_runner)",
    ),
]

import torchebm.cuda as tc  # noqa: E402
from torchebm.core import DoubleWellModel, GaussianModel, HarmonicModel  # noqa: E402

H, S = 0.013, 0.7
MU = torch.tensor([0.5, -1.0, 2.0])
VAR = torch.tensor([0.5, 1.0, 2.0])


def _close(kernel, eager):
    """Exact for float32/float64/float16; one ulp for bfloat16 (module docstring)."""
    assert kernel.dtype == eager.dtype and kernel.shape == eager.shape
    if kernel.dtype in (torch.float32, torch.float64, torch.float16):
        assert torch.equal(kernel, eager)
    else:
        ulp = torch.finfo(torch.bfloat16).eps * eager.float().abs().clamp_min(1.0)
        assert ((kernel.float() - eager.float()).abs() <= ulp).all()


def _data(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen).to(dtype) for _ in range(3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_step_kernel_equals_fallback_with_supplied_noise(dtype):
    # 4 * 257 + 3 elements: two programs, a partial last group
    x, g, e = _data((1031,), dtype)
    x = x.reshape(1031, 1)
    g, e = g.reshape(1031, 1), e.reshape(1031, 1)
    for clamp in (None, (-0.5, 0.75)):
        k = tc.fused_langevin_step(x, g, H, S, clamp=clamp, noise=e, force="triton")
        ref = tc.fused_langevin_step(x, g, H, S, clamp=clamp, noise=e, force="eager")
        _close(k, ref)


def test_step_kernel_in_place_non_contiguous_and_nan_propagation():
    x, g, e = _data((6, 5), torch.float32)
    ref = tc.fused_langevin_step(x, g, H, S, clamp=(-1, 1), noise=e, force="eager")
    xx = x.clone()
    tc.fused_langevin_step(xx, g, H, S, clamp=(-1, 1), noise=e, out=xx, force="triton")
    assert torch.equal(xx, ref)
    kt = tc.fused_langevin_step(x.t(), g.t(), H, S, clamp=(-1, 1), noise=e.t(), force="triton")
    assert torch.equal(kt, ref.t())
    x[2, 3] = math.nan
    k = tc.fused_langevin_step(x, g, H, S, clamp=(-1, 1), noise=e, force="triton")
    assert torch.isnan(k[2, 3]) and torch.isfinite(k[[0, 1, 3, 4, 5]]).all()


def test_in_kernel_philox_noise_is_standard_normal_and_independent():
    n = 4 * 6000 + 3
    z = torch.zeros(n, 1)
    eps = tc.fused_langevin_step(z, z, 0.5, 1.0, seed=1234, force="triton").flatten()  # sqrt(2h)=1
    assert abs(eps.mean().item()) < 4 / math.sqrt(n)
    assert abs(eps.var().item() - 1) < 4 * math.sqrt(2 / n)
    within = (eps.abs() < 1).float().mean().item()
    p = math.erf(1 / math.sqrt(2))
    assert abs(within - p) < 4 * math.sqrt(p * (1 - p) / n)
    # the four normals of one Philox call land in the four quarters: they must be uncorrelated
    n4 = (n + 3) // 4
    q = eps[: 4 * n4 - 4].reshape(4, n4 - 1)
    corr = torch.corrcoef(q)
    assert (corr - torch.eye(4)).abs().max() < 4 / math.sqrt(n4)
    # neighbours within a quarter come from different counters
    c = torch.corrcoef(torch.stack([eps[:-1], eps[1:]]))[0, 1]
    assert abs(c) < 4 / math.sqrt(n)
    # same seed, same numbers; another seed, other numbers
    again = tc.fused_langevin_step(z, z, 0.5, 1.0, seed=1234, force="triton").flatten()
    assert torch.equal(eps, again)
    other = tc.fused_langevin_step(z, z, 0.5, 1.0, seed=1235, force="triton").flatten()
    assert abs(torch.corrcoef(torch.stack([eps, other]))[0, 1]) < 4 / math.sqrt(n)


def test_generator_advances_by_exactly_one_int64_draw():
    z = torch.zeros(64, 2)
    gen, twin = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    a = tc.fused_langevin_step(z, z, 0.5, generator=gen, force="triton")
    torch.randint(0, 2**63 - 1, (1,), generator=twin, dtype=torch.int64)
    assert torch.equal(gen.get_state(), twin.get_state())
    b = tc.fused_langevin_step(
        z, z, 0.5, generator=torch.Generator().manual_seed(9), force="triton"
    )
    assert torch.equal(a, b)
    assert not torch.equal(a, tc.fused_langevin_step(z, z, 0.5, generator=gen, force="triton"))


def test_noise_scale_zero_draws_no_philox_key():
    x, g, _ = _data((40, 3), torch.float32)
    gen = torch.Generator().manual_seed(9)
    before = gen.get_state()
    k = tc.fused_langevin_step(x, g, H, 0.0, generator=gen, force="triton")
    assert torch.equal(gen.get_state(), before)  # before: one int64 drawn for nothing
    assert torch.equal(k, tc.fused_langevin_step(x, g, H, 0.0, force="eager"))
    c = tc.langevin_chain(x, HarmonicModel(k=2.5), 5, H, 0, generator=gen, force="triton")
    assert torch.equal(gen.get_state(), before)
    _close(c, tc.langevin_chain(x, HarmonicModel(k=2.5), 5, H, 0, force="eager"))


def _energies():
    return [HarmonicModel(k=2.5), DoubleWellModel(1.5, 0.8), GaussianModel(MU, torch.diag(VAR))]


@pytest.mark.parametrize("model", _energies(), ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_chain_kernel_equals_fallback_with_supplied_noise(model, dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(150, 3, generator=gen).to(dtype)  # two programs, partial last block
    noise = torch.randn(7, 150, 3, generator=gen)  # 7 steps: a partial group of four
    for clamp in (None, (-1.0, 1.5)):
        k = tc.langevin_chain(x, model, 7, H, S, clamp=clamp, noise=noise, force="triton")
        ref = tc.langevin_chain(x, model, 7, H, S, clamp=clamp, noise=noise, force="eager")
        _close(k, ref)


def test_chain_kernel_reaches_the_discrete_stationary_variance():
    k, h, n = 4.0, 0.05, 1024
    x = tc.langevin_chain(torch.zeros(n, 2), HarmonicModel(k=k), 42, h, seed=7, force="triton")
    var = 1 / (k * (1 - h * k / 2))
    assert abs(x.mean().item()) < 4 * math.sqrt(var / (2 * n))
    assert abs(x.var().item() - var) < 4 * var * math.sqrt(2 / (2 * n))
    # every step group draws fresh numbers: a chain of pure noise (k -> 0 limit via h*k tiny)
    z = tc.langevin_chain(torch.zeros(n, 1), HarmonicModel(k=1e-6), 9, 0.5, seed=3, force="triton")
    assert abs(z.var().item() / 9 - 1) < 4 * math.sqrt(2 / n)


MASSES = [None, 2.0, torch.tensor([1.0, 2.0, 4.0]), torch.rand(150, 3) + 0.5]


@pytest.mark.parametrize("mass", MASSES, ids=["none", "scalar", "event", "full"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_leapfrog_kernels_equal_fallbacks(mass, dtype):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(150, 3, generator=gen).to(dtype)
    p = torch.randn(150, 3, generator=gen).to(dtype)
    for model in _energies():
        for fn in (model, model.gradient):
            k = tc.fused_leapfrog_step(x, p, fn, 0.05, 3, mass=mass, force="triton")
            ref = tc.fused_leapfrog_step(x, p, fn, 0.05, 3, mass=mass, force="eager")
            for a, b in zip(k, ref):
                _close(a, b)
    g0 = HarmonicModel().gradient(x)
    k = tc.fused_leapfrog_step(x, p, HarmonicModel(), 0.05, 2, grad=g0, force="triton")
    ref = tc.fused_leapfrog_step(x, p, HarmonicModel(), 0.05, 2, grad=g0, force="eager")
    for a, b in zip(k, ref):
        _close(a, b)


def test_selfcheck_passes_and_reports_a_broken_kernel(capsys, monkeypatch):
    # ``python -m torchebm.cuda`` checks each kernel against its fallback: it must pass on
    # the real kernels and fail (exit code 1, a FAIL row) when one is off by 1e-3
    from torchebm.cuda import _backend, _selfcheck

    assert _selfcheck.main() == 0
    out = capsys.readouterr().out
    assert out.count("  ok  ") == 6 and "FAIL" not in out
    k = _backend.kernels()
    real = k.langevin_step

    def off(*args):
        real(*args)
        args[3].add_(1e-3)  # the output tensor

    monkeypatch.setattr(k, "langevin_step", off)
    assert _selfcheck.main() == 1
    fails = [line for line in capsys.readouterr().out.splitlines() if "FAIL" in line]
    assert len(fails) == 1 and "step: max |kernel - eager|" in fails[0]


def test_selfcheck_sees_a_noise_amplitude_15_percent_off(capsys, monkeypatch):
    # the in-kernel noise rows drew 512 normals in the interpreter: 5 SE of the variance was
    # 0.31, so noise 1.15 times too large (variance +32%) passed
    from torchebm.cuda import _backend, _selfcheck

    k = _backend.kernels()
    real = k.langevin_step

    def loud(x, grad, noise, out, seed_t, seed_val, step_size, noise_coef, clamp):
        coef = noise_coef if noise is not None else 1.15 * noise_coef
        return real(x, grad, noise, out, seed_t, seed_val, step_size, coef, clamp)

    monkeypatch.setattr(k, "langevin_step", loud)
    assert _selfcheck.main() == 1
    fails = [line for line in capsys.readouterr().out.splitlines() if "FAIL" in line]
    assert len(fails) == 1 and "step noise: |var - 1|" in fails[0]
