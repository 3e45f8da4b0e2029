"""Interpolants: boundary conditions, derivatives, drift/diffusion and conversions."""

import math

import numpy as np
import pytest
import torch

from torchebm.core import BaseInterpolant, expand_t_like_x
from torchebm.core.errors import ShapeError
from torchebm.interpolants import (
    INTERPOLANT_NAMES,
    CosineInterpolant,
    LinearInterpolant,
    VarianceExplodingInterpolant,
    VariancePreservingInterpolant,
    get_interpolant,
    resolve_interpolant,
)

F64 = torch.float64
ALL = [
    LinearInterpolant(),
    CosineInterpolant(),
    VariancePreservingInterpolant(),
    VarianceExplodingInterpolant(),
    VarianceExplodingInterpolant(schedule="edm"),
]
IDS = ["linear", "cosine", "vp", "ve", "edm"]


def test_boundary_conditions():
    t = torch.tensor([0.0, 1.0], dtype=F64)
    for interp in ALL[:2]:
        a, _ = interp.compute_alpha_t(t)
        s, _ = interp.compute_sigma_t(t)
        assert torch.allclose(a, torch.tensor([0.0, 1.0], dtype=F64), atol=1e-15)
        assert torch.allclose(s, torch.tensor([1.0, 0.0], dtype=F64), atol=1e-15)
    vp = VariancePreservingInterpolant()
    a, _ = vp.compute_alpha_t(t)
    s, _ = vp.compute_sigma_t(t)
    assert abs(a[0].item() - math.exp(-0.25 * 19.9 - 0.05)) < 1e-15  # e^{-5.025}
    assert a[1].item() == 1.0 and s[1].item() < 1e-5
    assert abs(s[0].item() - math.sqrt(1 - math.exp(-2 * 5.025))) < 1e-12
    for ve in ALL[3:]:
        a, da = ve.compute_alpha_t(t)
        s, _ = ve.compute_sigma_t(t)
        assert torch.equal(a, torch.ones_like(a)) and torch.equal(da, torch.zeros_like(da))
        assert torch.allclose(s, torch.tensor([ve.sigma_max, ve.sigma_min], dtype=F64), rtol=1e-12)


@pytest.mark.parametrize("interp", ALL, ids=IDS)
def test_derivatives_match_finite_differences(interp):
    t = torch.linspace(0.05, 0.95, 19, dtype=F64)
    h = 1e-6
    for fn in (interp.compute_alpha_t, interp.compute_sigma_t):
        v, dv = fn(t)
        fd = (fn(t + h)[0] - fn(t - h)[0]) / (2 * h)
        assert torch.allclose(dv, fd, rtol=1e-6, atol=1e-6 * max(1.0, v.abs().max().item()))


@pytest.mark.parametrize("interp", ALL, ids=IDS)
def test_closed_form_ratio_matches_generic(interp):
    t = torch.linspace(0.05, 0.95, 10, dtype=F64)
    a, da = interp.compute_alpha_t(t)
    assert torch.allclose(interp.compute_d_alpha_alpha_ratio_t(t), da / a, rtol=1e-10)


def test_variance_preserving_paths():
    t = torch.rand(100, dtype=F64)
    for interp in (CosineInterpolant(), VariancePreservingInterpolant()):
        a, _ = interp.compute_alpha_t(t)
        s, _ = interp.compute_sigma_t(t)
        assert torch.allclose(a**2 + s**2, torch.ones_like(t), atol=1e-10)


@pytest.mark.parametrize("interp", ALL, ids=IDS)
def test_interpolate_and_conditional_velocity(interp):
    g = torch.Generator().manual_seed(0)
    x0, x1 = (
        torch.randn(6, 3, 2, dtype=F64, generator=g),
        torch.randn(6, 3, 2, dtype=F64, generator=g),
    )
    t = torch.rand(6, dtype=F64, generator=g) * 0.9 + 0.05
    xt, ut = interp.interpolate(x0, x1, t)
    h = 1e-6
    xp, _ = interp.interpolate(x0, x1, t + h)
    xm, _ = interp.interpolate(x0, x1, t - h)
    assert torch.allclose(ut, (xp - xm) / (2 * h), rtol=1e-5, atol=1e-5)
    assert xt.shape == x0.shape and xt.dtype == F64


@pytest.mark.parametrize("interp", ALL, ids=IDS)
def test_conversions_are_consistent(interp):
    """With s = -x0/sigma (conditional score), v = u_t and noise = x0 exactly."""
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(8, 4, dtype=F64, generator=g), torch.randn(8, 4, dtype=F64, generator=g)
    t = torch.rand(8, dtype=F64, generator=g) * 0.8 + 0.1
    xt, ut = interp.interpolate(x0, x1, t)
    sigma, _ = interp.compute_sigma_t(expand_t_like_x(t, xt))
    score = -x0 / sigma
    tol = dict(rtol=1e-8, atol=1e-8)
    assert torch.allclose(interp.velocity_to_score(ut, xt, t), score, **tol)
    assert torch.allclose(interp.velocity_to_noise(ut, xt, t), x0, **tol)
    assert torch.allclose(interp.score_to_velocity(score, xt, t), ut, **tol)
    assert torch.allclose(interp.score_to_noise(score, xt, t), x0, **tol)
    assert torch.allclose(interp.noise_to_score(x0, xt, t), score, **tol)
    assert torch.allclose(interp.noise_to_velocity(x0, xt, t), ut, **tol)
    assert torch.allclose(interp.velocity_to_data(ut, xt, t), x1, rtol=1e-7, atol=1e-7)
    a, bv = interp.compute_drift(xt, t)
    assert torch.allclose(-a + bv * score, ut, **tol)


def test_marginal_velocity_of_gaussian_data():
    """For x1 ~ N(m, s^2), the exact marginal velocity E[u|x_t] equals score_to_velocity(score)."""
    lin = LinearInterpolant()
    m, s = 1.5, 0.5
    t = torch.full((5,), 0.3, dtype=F64)
    x = torch.linspace(-2, 2, 5, dtype=F64).reshape(5, 1)
    var = 0.3**2 * s**2 + 0.7**2
    score = -(x - 0.3 * m) / var
    # E[x1 - x0 | x_t] by Gaussian conditioning: cov(x1 - x0, x_t) = t s^2 - (1-t)
    v_true = m + (0.3 * s**2 - 0.7) / var * (x - 0.3 * m)
    assert torch.allclose(lin.score_to_velocity(score, x, t), v_true, atol=1e-12)


def test_vp_drift_override_equals_generic():
    vp = VariancePreservingInterpolant(sigma_min=0.2, sigma_max=10.0)
    x = torch.randn(7, 3, dtype=F64)
    t = torch.rand(7, dtype=F64) * 0.98 + 0.01
    a, bv = vp.compute_drift(x, t)
    a_gen, bv_gen = BaseInterpolant.compute_drift(vp, x, t)
    assert torch.allclose(a, a_gen, rtol=1e-9) and torch.allclose(bv, bv_gen, rtol=1e-7)


def test_diffusion_forms():
    lin = LinearInterpolant()
    x = torch.zeros(4, 3, 2, dtype=F64)
    t = torch.tensor([0.1, 0.4, 0.6, 0.9], dtype=F64)
    tb = t.reshape(4, 1, 1)
    assert torch.equal(
        lin.compute_diffusion(x, t, "constant", 2.0), torch.full((4, 1, 1), 2.0, dtype=F64)
    )
    assert torch.allclose(lin.compute_diffusion(x, t, "sigma"), 1 - tb)
    assert torch.allclose(lin.compute_diffusion(x, t, "linear", 0.5), 0.5 * (1 - tb))
    assert torch.allclose(lin.compute_diffusion(x, t, "decreasing"), (1 - tb) ** 2)
    assert torch.allclose(lin.compute_diffusion(x, t, "increasing-decreasing"), 4 * tb * (1 - tb))
    # SBDM: the diffusion g^2/2 of the forward SDE dx = f x dt + g dW whose marginals are
    # alpha x1 + sigma eps; for alpha = t, sigma = 1 - t it is (1 - t)/t (SiT's form; torchebm
    # 0.8.9 divided it by sigma, 1/t, which does not vanish at the data end)
    assert torch.allclose(lin.compute_diffusion(x, t, "SBDM"), (1 - tb) / tb)
    # ... and for the VP path beta_t / 2, DDPM's reverse-SDE diffusion (g^2 = beta_t)
    vp = VariancePreservingInterpolant(sigma_min=0.1, sigma_max=20.0)
    beta = 0.1 + (1 - tb) * (20.0 - 0.1)
    assert torch.allclose(vp.compute_diffusion(x, t, "SBDM"), beta / 2)
    with pytest.raises(ValueError, match=r"form must be one of \[.*\], got .bogus."):
        lin.compute_diffusion(x, t, "bogus")


def test_registry_and_resolver():
    assert set(INTERPOLANT_NAMES) >= {"linear", "cosine", "vp"}
    assert isinstance(get_interpolant("vp"), VariancePreservingInterpolant)
    assert get_interpolant("edm").schedule == "edm"
    with pytest.raises(ValueError, match="Unknown interpolant: foo. Choose from"):
        get_interpolant("foo")
    lin = LinearInterpolant()
    assert resolve_interpolant(lin, default="vp", owner="X") is lin
    assert isinstance(resolve_interpolant(None, default="cosine", owner="X"), CosineInterpolant)
    with pytest.raises(TypeError, match="FlowSampler requires a BaseInterpolant; got int"):
        resolve_interpolant(3, default="linear", owner="FlowSampler")
    with pytest.raises(TypeError):
        BaseInterpolant()
    with pytest.raises(ValueError, match="sigma_max"):
        VariancePreservingInterpolant(sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="schedule"):
        VarianceExplodingInterpolant(schedule="cosine")


def test_expand_and_scalar_time():
    x = torch.zeros(4, 3, 8, 8)
    assert expand_t_like_x(torch.zeros(4), x).shape == (4, 1, 1, 1)
    xt, _ = LinearInterpolant().interpolate(torch.zeros(4, 2), torch.ones(4, 2), 0.25)
    assert torch.allclose(xt, torch.full((4, 2), 0.25))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("interp", ALL, ids=IDS)
def test_conversions_keep_the_input_dtype(interp, dtype):
    # the floor that keeps a divisor away from 0 is made in the input's dtype, so a
    # bfloat16 (or float32, whatever the default dtype) call stays in that dtype
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, generator=g).to(dtype)
    t = torch.rand(4, generator=g).mul(0.8).add(0.1).to(dtype)
    for convert in (interp.velocity_to_score, interp.velocity_to_noise, interp.velocity_to_data):
        out = convert(x, x, t)
        assert out.dtype == dtype and bool(torch.isfinite(out).all())


def test_cosine_ratio_at_the_data_end_in_float32():
    # d_alpha/alpha = (pi/2) cot(pi t/2) -> 0 at t = 1; tan(pi/2) is -2.3e7 in float32, and
    # a floor on tan (instead of on alpha) turned that into (pi/2)/1e-8 = 1.6e8
    t = torch.tensor([0.5, 0.99, 1.0])
    ratio = CosineInterpolant().compute_d_alpha_alpha_ratio_t(t)
    exact = 0.5 * math.pi / torch.tan(0.5 * math.pi * t.double())
    assert torch.allclose(ratio.double(), exact, rtol=1e-5, atol=1e-6)
    a, _ = CosineInterpolant().compute_drift(torch.ones(3, 2), t)
    assert a.abs().max().item() < 2.0


@pytest.mark.parametrize("interp", ALL[:3], ids=IDS[:3])
def test_float16_floors_do_not_round_to_zero(interp):
    # a 1e-8 divisor floor is 0 in float16: each floor is at least the dtype's smallest
    # normal number (6.1e-5), so t = 0 and t = 1 give finite ratios, scores and diffusions
    # (the VE paths are left out: sigma_max = 80 puts B_v = 6.8e4 beyond float16's range)
    x = torch.full((4, 2), 0.5, dtype=torch.float16)
    t = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float16)
    outs = [
        interp.compute_d_alpha_alpha_ratio_t(t),
        interp.noise_to_score(x, x, t),
        interp.velocity_to_score(x, x, t),
        interp.velocity_to_noise(x, x, t),
        interp.compute_diffusion(x, t, form="SBDM"),
    ]
    for out in outs:
        assert out.dtype == torch.float16 and bool(torch.isfinite(out).all()), out


def test_a_column_of_times_is_one_time_per_sample_for_image_events():
    # t[:, None] against (B, C, H, W) broadcast over H and W before (B = 8: no error and
    # x_t off by 4.3); it is now read as (B,), and a t with more than B entries is refused
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(2, 8, 3, 4, 4, generator=g)
    t = torch.rand(8, generator=g)
    for interp in ALL:
        ref = interp.interpolate(x0, x1, t)
        col = interp.interpolate(x0, x1, t[:, None])
        assert torch.equal(ref[0], col[0]) and torch.equal(ref[1], col[1])
    with pytest.raises(ShapeError, match=r"t must have shape \(B,\) with B=8"):
        LinearInterpolant().interpolate(x0, x1, t[:4, None].expand(4, 2))


@pytest.mark.parametrize("interp", ALL, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_velocity_to_data_is_exact_at_both_ends(interp, dtype):
    """The conditional velocity of a pair gives back its data point, at t = 0 too, where
    (x - sigma x0_hat) / alpha was 0/0 for Linear and Cosine (0 returned, error 2.2) and
    lost 2e-2 to cancellation at t = 1e-6 in float32."""
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(6, 3, generator=g, dtype=F64).to(dtype)
    x0 = torch.randn(6, 3, generator=g, dtype=F64).to(dtype)
    eps = torch.finfo(dtype).eps
    for tv in (0.0, 1e-6, 1e-3, 0.5, 0.999, 1.0):
        t = torch.full((6,), tv, dtype=dtype)
        (a, da), (s, ds) = interp.compute_alpha_t(t[:, None]), interp.compute_sigma_t(t[:, None])
        x, v = a * x1 + s * x0, da * x1 + ds * x0
        got = interp.velocity_to_data(v, x, t)
        # a few roundings of each term of (ds x - s v) / det, x and v made in `dtype` too
        terms = ds.abs() * (a * x1).abs() + (ds * s * x0).abs() + (s * da * x1).abs()
        terms = terms + (s * ds * x0).abs()
        bound = 8 * eps * terms / (a * ds - s * da).abs() + 2 * eps * x1.abs()
        assert bool(((got - x1).abs() <= bound).all()), (tv, dtype)


def test_a_column_of_times_against_a_batch_of_scalars():
    """x of shape (B,) (scalar events) with t of shape (B, 1) broadcast to an outer product
    (B, B) before; now one time per sample, and a wrong count is a ShapeError."""
    x0, x1 = torch.zeros(5), torch.ones(5)
    t = torch.linspace(0.1, 0.9, 5)
    xt, ut = LinearInterpolant().interpolate(x0, x1, t[:, None])
    assert xt.shape == (5,) and torch.allclose(xt, t) and torch.allclose(ut, torch.ones(5))
    with pytest.raises(ShapeError, match="t must have shape"):
        LinearInterpolant().interpolate(x0, x1, torch.rand(4, 1))


@pytest.mark.parametrize("schedule", ["geometric", "edm"])
def test_ve_velocity_conversions_on_images_and_a_velocity_of_another_shape(schedule):
    ve = VarianceExplodingInterpolant(schedule=schedule)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    v = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    score, noise = ve.velocity_to_score(v, x, t), ve.velocity_to_noise(v, x, t)
    for i in range(3):  # per sample: s = -v / (sigma sigma'), x0_hat = v / sigma'
        sigma, d_sigma = ve.compute_sigma_t(t[i])
        torch.testing.assert_close(score[i], -v[i] / (sigma * d_sigma))
        torch.testing.assert_close(noise[i], v[i] / d_sigma)
    # a (B, 1) velocity gave a (B, 1) "score" of a (B, D) state without an error
    for convert in (ve.velocity_to_score, ve.velocity_to_noise):
        with pytest.raises(ShapeError, match=r"velocity must have the shape of x \(3, 4\)"):
            convert(torch.ones(3, 1), torch.ones(3, 4), torch.full((3,), 0.5))


@pytest.mark.parametrize(
    "interpolant",
    [LinearInterpolant(), VariancePreservingInterpolant(), VarianceExplodingInterpolant()],
    ids=lambda i: type(i).__name__,
)
def test_every_conversion_refuses_a_prediction_of_another_shape(interpolant):
    # a (B, 1, 1, 1) prediction broadcast against the schedules (and x) and came back as a
    # result built from the wrong-shaped prediction, for a (B, C, H, W) state; only VE's
    # velocity conversions refused it
    x, t = torch.randn(2, 3, 4, 4), torch.tensor([0.3, 0.7])
    s = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(
        interpolant.noise_to_score(interpolant.score_to_noise(s, x, t), x, t), s
    )
    conversions = {
        "score": ("score_to_noise", "score_to_velocity"),
        "noise": ("noise_to_score", "noise_to_velocity"),
        "velocity": ("velocity_to_score", "velocity_to_noise", "velocity_to_data"),
    }
    for name, methods in conversions.items():
        for method in methods:  # a number broadcast to (B, 1, 1, 1) results too
            with pytest.raises(ShapeError, match=rf"{name} must have .* got a float"):
                getattr(interpolant, method)(0.5, x, t)
            with pytest.raises(
                ShapeError, match=rf"{name} must have the shape of x \(2, 3, 4, 4\)"
            ):
                getattr(interpolant, method)(torch.ones(2, 1, 1, 1), x, t)


@pytest.mark.parametrize(
    "t",
    [True, torch.tensor([True, False]), np.True_, np.array([True, False])],
    ids=["python", "tensor", "numpy", "numpy-array"],
)
def test_a_bool_time_is_refused(t):
    # True ran as t = 1 (the data end) without a word
    x0, x1 = torch.zeros(2, 3), torch.ones(2, 3)
    with pytest.raises(TypeError, match="t must be a floating time in \\[0, 1\\], got a bool"):
        LinearInterpolant().interpolate(x0, x1, t)


def _vp_closed_form(t: float) -> tuple[float, float, float, float]:
    """(alpha, d_alpha, sigma, d_sigma) of the default VP path in float64 (expm1, no cancellation)."""
    s, lo, hi = 1.0 - t, 0.1, 20.0
    log_a, d_log_a = -0.25 * s * s * (hi - lo) - 0.5 * s * lo, 0.5 * s * (hi - lo) + 0.5 * lo
    a, sig = math.exp(log_a), math.sqrt(-math.expm1(2 * log_a))
    return a, a * d_log_a, sig, -math.exp(2 * log_a) * d_log_a / sig if sig > 0 else -math.inf


def _cosine_closed_form(t: float) -> tuple[float, float, float, float]:
    h = 0.5 * math.pi
    return math.sin(h * t), h * math.sin(h * (1 - t)), math.sin(h * (1 - t)), -h * math.sin(h * t)


@pytest.mark.parametrize(
    ("interp", "closed_form"),
    [
        (CosineInterpolant(), _cosine_closed_form),
        (VariancePreservingInterpolant(), _vp_closed_form),
    ],
    ids=["cosine", "vp"],
)
def test_float32_schedules_near_the_data_end_match_float64(interp, closed_form):
    """sigma -> 0 at t = 1: float32 sigma was cos(rounded pi t / 2) (-4.4e-8 at t = 1, 5% off
    at 1 - 1e-6) and sqrt(1 - exp(2L)) (8% off at 1 - 1e-6, 99% at 1 - 1e-7); each value is
    now within a few roundings of the float64 closed form at the same float32 time."""
    t = torch.tensor([0.5, 0.999, 1 - 1e-5, 1 - 1e-6, 1 - 1e-7, 1.0])
    (a, da), (s, ds) = interp.compute_alpha_t(t), interp.compute_sigma_t(t)
    eps = torch.finfo(torch.float32).eps
    for i, tv in enumerate(t.double().tolist()):
        ref = closed_form(tv)
        if tv == 1.0 and isinstance(interp, VariancePreservingInterpolant):
            ref = ref[:2]  # sigma = 0 exactly: floored (documented), d_sigma infinite
        for got, want in zip((a[i], da[i], s[i], ds[i]), ref):
            assert abs(float(got) - want) <= 8 * eps * abs(want), (tv, float(got), want)
    assert float(CosineInterpolant().compute_sigma_t(torch.ones(1))[0]) == 0.0


@pytest.mark.parametrize(
    "interpolant",
    [
        LinearInterpolant(),
        CosineInterpolant(),
        VariancePreservingInterpolant(),
        VarianceExplodingInterpolant(),
    ],
    ids=lambda i: type(i).__name__,
)
def test_interpolate_under_torch_func_transforms(interpolant):
    # the time check read values on the host: under vmap torch refused ("We do not support
    # batching operators that can output dynamic shape", aten::nonzero)
    from torch.func import jacfwd, vmap

    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(5, 3, generator=g, dtype=F64)
    t = torch.rand(5, generator=g, dtype=F64) * 0.8 + 0.1

    def xt_of(ti, a, b):
        return interpolant.interpolate(a[None], b[None], ti[None])[0][0]

    dxt_dt = vmap(jacfwd(xt_of))(t, x0, x1)  # the path's time derivative, per sample
    _, ut = interpolant.interpolate(x0, x1, t)
    torch.testing.assert_close(dxt_dt, ut, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):  # outside a transform: still checked
        interpolant.interpolate(x0, x1, t + 1)
