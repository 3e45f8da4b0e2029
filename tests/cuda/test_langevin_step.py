"""fused_langevin_step: the eager fallback is the reference maths bit-for-bit; RNG; errors."""

import math
import warnings

import pytest
import torch

import torchebm.core as core
import torchebm.cuda as tc
from torchebm.core.errors import ConfigurationError, ShapeError
from torchebm.cuda.fused_langevin import doublewell_langevin_chain

H, S = 0.013, 0.7


def _reference(x, g, eps, h=H, s=S, clamp=None):
    """The documented maths, computed in float32 for half types and rounded once."""
    cd = torch.float64 if x.dtype == torch.float64 else torch.float32
    y = x.to(cd) - h * g.to(cd) + (s * math.sqrt(2 * h)) * eps.to(cd)
    if clamp is not None:
        y = y.clamp(*clamp)
    return y.to(x.dtype)


def _data(dtype=torch.float32, shape=(33, 7), seed=0):
    gen = torch.Generator().manual_seed(seed)
    x, g, e = (torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype) for _ in range(3))
    return x, g, e


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("clamp", [None, (-0.4, 0.5), (None, 0.3), (-0.2, None)])
def test_fallback_equals_reference_bit_for_bit(dtype, clamp):
    x, g, e = _data(dtype)
    ref = _reference(x, g, e, clamp=None if clamp is None else tuple(
        v if v is not None else (math.inf if i else -math.inf) for i, v in enumerate(clamp)
    ))  # fmt: skip
    out = tc.fused_langevin_step(x, g, H, S, clamp=clamp, noise=e, force="eager")
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.equal(out, ref)
    # auto on CPU is the eager path
    assert torch.equal(tc.fused_langevin_step(x, g, H, S, clamp=clamp, noise=e), ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_out_may_alias_any_input(dtype):
    x, g, e = _data(dtype)
    ref = _reference(x, g, e)
    for alias in ("x", "g", "e"):
        xx, gg, ee = x.clone(), g.clone(), e.clone()
        target = {"x": xx, "g": gg, "e": ee}[alias]
        res = tc.fused_langevin_step(xx, gg, H, S, noise=ee, out=target)
        assert res is target
        assert torch.equal(target, ref), alias
    o = torch.empty_like(x)
    assert tc.fused_langevin_step(x, g, H, S, noise=e, out=o) is o and torch.equal(o, ref)


def test_noise_with_other_dtype_is_cast_to_compute_dtype():
    x, g, e = _data(torch.float16)
    e32 = e.float() + 1e-3  # not representable in half: must be used at float32 precision
    ref = (x.float() - H * g.float() + (S * math.sqrt(2 * H)) * e32).half()
    assert torch.equal(tc.fused_langevin_step(x, g, H, S, noise=e32), ref)


def test_generator_drives_exactly_one_randn_draw_and_leaves_global_rng_alone():
    x, g, _ = _data()
    gen = torch.Generator().manual_seed(123)
    twin = torch.Generator().manual_seed(123)
    torch.manual_seed(7)
    before = torch.get_rng_state()
    out = tc.fused_langevin_step(x, g, H, S, generator=gen)
    assert torch.equal(torch.get_rng_state(), before)
    eps = torch.randn(x.shape, generator=twin)
    assert torch.equal(out, _reference(x, g, eps))
    assert torch.equal(gen.get_state(), twin.get_state())


@pytest.mark.parametrize("zero", [0, 0.0], ids=["int", "float"])
def test_noise_scale_zero_draws_nothing(zero):
    # before: a normal tensor was drawn and multiplied by 0, advancing the generator
    x, g, _ = _data()
    gen = torch.Generator().manual_seed(3)
    before = gen.get_state()
    out = tc.fused_langevin_step(x, g, H, zero, generator=gen)
    assert torch.equal(gen.get_state(), before)
    assert torch.equal(out, _reference(x, g, torch.zeros_like(x), s=0.0))  # the eager update
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    tc.fused_langevin_step(x, g, H, zero)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG alike
    chain = tc.langevin_chain(x, core.HarmonicModel(k=1.0), 3, H, zero, generator=gen)
    assert torch.equal(gen.get_state(), before) and bool(chain.isfinite().all())


def test_seed_is_reproducible_and_equals_a_seeded_generator():
    x, g, _ = _data()
    a = tc.fused_langevin_step(x, g, H, S, seed=99)
    b = tc.fused_langevin_step(x, g, H, S, seed=99)
    c = tc.fused_langevin_step(x, g, H, S, generator=torch.Generator().manual_seed(99))
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, tc.fused_langevin_step(x, g, H, S, seed=100))


def test_global_rng_is_used_without_generator():
    x, g, _ = _data()
    torch.manual_seed(5)
    a = tc.fused_langevin_step(x, g, H, S)
    torch.manual_seed(5)
    eps = torch.randn(x.shape)
    assert torch.equal(a, _reference(x, g, eps))


def test_one_step_noise_has_the_langevin_variance():
    # x = 0, grad = 0: the update is pure noise with variance 2 * h * s**2
    n = 40_000
    z = torch.zeros(n, 1)
    y = tc.fused_langevin_step(z, z, 0.125, 2.0, generator=torch.Generator().manual_seed(1))
    var = 2 * 0.125 * 4.0
    assert abs(y.mean().item()) < 4 * math.sqrt(var / n)
    assert abs(y.var().item() / var - 1) < 4 * math.sqrt(2 / n)


def test_state_of_any_event_shape_and_non_contiguous_inputs():
    x, g, e = _data(shape=(4, 3, 5))
    xt, gt, et = x.transpose(1, 2), g.transpose(1, 2), e.transpose(1, 2)
    out = tc.fused_langevin_step(xt, gt, H, S, noise=et)
    assert torch.equal(out, _reference(xt, gt, et))


def test_not_differentiable_and_no_grad_leak():
    x, g, e = _data()
    x.requires_grad_(True)
    out = tc.fused_langevin_step(x, g, H, S, noise=e)
    assert not out.requires_grad
    g.requires_grad_(True)
    gen = torch.Generator().manual_seed(0)
    out = tc.fused_langevin_step(x, g, H, S, generator=gen)  # the common call's fast path
    assert not out.requires_grad and torch.is_grad_enabled()


def test_fast_path_agrees_with_the_detailed_checks():
    from torchebm.cuda._validate import plain_step_args

    x, g, _ = _data()
    gen = torch.Generator()
    assert plain_step_args(x, g, H, S, None) and plain_step_args(x, g, H, 0.0, gen)
    rejected = [
        (x, g, 1, S, None),  # int step size: the detailed checks decide
        (x, g, H, 1, None),
        (x, g.double(), H, S, None),
        (x, g[:-1], H, S, None),
        (x.long(), g.long(), H, S, None),
        (torch.zeros(0, 7), torch.zeros(0, 7), H, S, None),
        (x, g, H, S, 1),
        (x.to("meta"), g.to("meta"), H, S, gen),
        (torch.nn.Parameter(x), g, H, S, None),  # subclasses too
    ]
    for args in rejected:
        assert not plain_step_args(*args)
    # an int step size is still valid: the slow path accepts it and gives the same result
    a = tc.fused_langevin_step(x, g, 1, S, generator=torch.Generator().manual_seed(0))
    b = tc.fused_langevin_step(x, g, 1.0, S, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- errors
def test_errors_name_the_argument():
    x, g, e = _data()
    cases = [
        (dict(x=x.long()), TypeError, "x must have dtype"),
        (dict(x=x.to(torch.complex64), grad=g.to(torch.complex64)), TypeError, "x must have dtype"),
        (dict(grad=g.double()), TypeError, "grad must have the dtype"),
        (dict(grad=g[:-1]), ShapeError, "grad must have shape"),
        (dict(grad=g.to("meta")), ConfigurationError, "grad must be on the device"),
        (dict(x=torch.zeros(0, 3), grad=torch.zeros(0, 3)), ShapeError, "non-empty batch"),
        (dict(x=torch.tensor(1.0), grad=torch.tensor(1.0)), ShapeError, "at least 1"),
        (dict(grad=[1.0]), TypeError, "grad must be a torch.Tensor"),
        (dict(step_size=0.0), ValueError, "step_size must be positive"),
        (dict(step_size=-0.1), ValueError, "step_size must be positive"),
        (dict(step_size=torch.tensor(0.1)), TypeError, "step_size"),
        (dict(noise_scale=-1.0), ValueError, "noise_scale must be non-negative"),
        (dict(clamp=(1.0, 1.0)), ValueError, "lo < hi"),
        (dict(clamp=(2.0, 1.0)), ValueError, "lo < hi"),
        (dict(clamp=(0.0, math.nan)), ValueError, "NaN"),
        (dict(clamp=1.0), TypeError, "clamp must be None or a pair"),
        (dict(clamp=("a", 1.0)), TypeError, "clamp\\[0\\]"),
        (dict(noise=e[:, :3]), ShapeError, "noise must have shape"),
        (dict(noise=e.int()), TypeError, "noise must have dtype"),
        (dict(noise=e, seed=1), ValueError, "either noise or seed"),
        (dict(seed=1, generator=torch.Generator()), ValueError, "either seed or generator"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
        (dict(seed=2**63), ValueError, "seed must be <"),
        (dict(seed=1.5), TypeError, "seed must be an int"),
        (dict(generator="1"), TypeError, "generator must be a torch.Generator"),
        (dict(out=torch.empty(7, 33).t()), ValueError, "out must be contiguous"),
        (dict(out=torch.empty(33, 7, dtype=torch.float64)), TypeError, "out must have the dtype"),
        (dict(force="cuda"), ValueError, "force must be one of"),
        # values the fast path for common calls must hand to the detailed checks
        (dict(step_size=math.nan), ValueError, "step_size"),
        (dict(step_size=math.inf), ValueError, "step_size"),
        (dict(step_size=True), TypeError, "step_size"),
        (dict(noise_scale=math.inf), ValueError, "noise_scale"),
        (dict(noise_scale=math.nan), ValueError, "noise_scale"),
        (
            dict(x=x.to("meta"), grad=g.to("meta"), generator=torch.Generator()),
            ValueError,
            "generator must be on the device",
        ),
    ]
    for over, err, msg in cases:
        kwargs = dict(x=x, grad=g, step_size=H, noise_scale=S) | over
        with pytest.raises(err, match=msg):
            tc.fused_langevin_step(**kwargs)


def test_089_positional_seed_and_out_keep_their_meaning():
    # 0.8.9: fused_langevin_step(x, grad, step_size, noise_scale, clamp, noise, seed, out);
    # generator was inserted before seed, so 0.8.9's positional seed landed in generator
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    grad = x.clone()
    want = tc.fused_langevin_step(x, grad, 0.1, 1.0, None, None, seed=42)
    out = torch.empty_like(x)
    with pytest.warns(DeprecationWarning, match="0.8.9's order"):
        got = tc.fused_langevin_step(x, grad, 0.1, 1.0, None, None, 42, out)
    assert got is out and torch.equal(got, want)
    import numpy as np

    out2 = torch.empty_like(x)  # positional seed (a numpy int too), out by keyword
    got = tc.fused_langevin_step(x, grad, 0.1, 1.0, None, None, np.int64(42), out=out2)
    assert got is out2 and torch.equal(got, want)


def test_089_positional_none_seed_with_out_and_noise_with_seed():
    # 0.8.9's (..., noise, None, out): out landed in seed ("seed must be an int, got
    # tensor(...)"); 0.8.9's (..., noise, 3, out) ignored the seed for the given noise
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    grad, noise = x.clone(), torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    want = tc.fused_langevin_step(x, grad, 0.1, 1.0, None, None)
    out = torch.empty_like(x)
    torch.manual_seed(5)
    got = tc.fused_langevin_step(x, grad, 0.1, 1.0, None, None, None, out)
    assert got is out and torch.equal(got, want)
    want = tc.fused_langevin_step(x, grad, 0.1, 1.0, None, noise)
    out = torch.empty_like(x)
    got = tc.fused_langevin_step(x, grad, 0.1, 1.0, None, noise, 3, out)
    assert got is out and torch.equal(got, want)


def test_a_tensor_seed_by_keyword_is_named_not_taken_for_out():
    # seed=torch.tensor(5) was taken as 0.8.9's positional out: "out must have dtype float32"
    x, g = torch.randn(4, 3), torch.zeros(4, 3)
    with pytest.raises(TypeError, match=r"seed must be an int, got tensor\(5\)"):
        tc.fused_langevin_step(x, g, 0.1, seed=torch.tensor(5))


def test_doublewell_chain_names_a_non_contiguous_x():
    x = torch.zeros(2, 8).T  # it said "out must be contiguous", an argument never passed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the function's own, once
        with pytest.raises(ConfigurationError, match="x must be contiguous"):
            doublewell_langevin_chain(x, 10, 0.01, seed=0)
