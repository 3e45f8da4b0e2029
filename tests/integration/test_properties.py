"""Property-based tests (hypothesis): shapes and dtypes of samplers, interpolants, integrators,
plus closed-form invariants that must hold for every drawn shape/dtype/time."""

from __future__ import annotations

import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import torchebm.integrators as I
import torchebm.interpolants as IP
import torchebm.samplers as S
from torchebm.core import HarmonicModel

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
DTYPES = st.sampled_from([torch.float32, torch.float64])
event_shapes = st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------- samplers
@st.composite
def runs(draw, flat_only: bool = False):
    shape = (draw(st.integers(1, 4)),) if flat_only else draw(event_shapes)
    n_steps = draw(st.integers(1, 6))
    thin = draw(st.integers(1, n_steps))
    return {
        "batch": draw(st.integers(1, 5)),
        "shape": shape,
        "n_steps": n_steps,
        "thin": thin,
        "dtype": draw(DTYPES),
    }


def _check_sampler(sampler, r, diag_keys):
    b, shape, n, thin, dtype = r["batch"], r["shape"], r["n_steps"], r["thin"], r["dtype"]
    x0 = torch.randn((b, *shape), generator=gen(1), dtype=torch.float64)
    out = sampler.sample(x=x0, n_steps=n, generator=gen())
    assert out.shape == (b, *shape) and out.dtype == dtype
    assert torch.isfinite(out).all()
    traj, diag = sampler.sample(
        x=x0, n_steps=n, thin=thin, return_trajectory=True, return_diagnostics=True, generator=gen()
    )
    kept = n // thin
    assert traj.shape == (b, kept, *shape) and traj.dtype == dtype
    # the last kept row is the final state when thin divides n_steps
    if n % thin == 0:
        assert torch.equal(traj[:, -1], out)
    assert set(diag_keys) <= set(diag)
    for k in diag_keys:
        assert diag[k].shape[0] == kept, k
    if "mean" in diag:
        assert diag["mean"].shape == (kept, *shape)
        assert torch.allclose(diag["mean"][-1].to(out.dtype), traj[:, -1].mean(0), atol=1e-6)
    if "energy" in diag:
        assert diag["energy"].shape == (kept,)
    from_dim = sampler.sample(dim=shape, n_samples=b, n_steps=n, generator=gen())
    assert from_dim.shape == (b, *shape) and from_dim.dtype == dtype


@SETTINGS
@given(runs())
def test_langevin_shapes_and_dtypes(r):
    s = S.LangevinDynamics(HarmonicModel(), step_size=0.05, dtype=r["dtype"])
    _check_sampler(s, r, ["mean", "var", "energy"])


@SETTINGS
@given(runs(flat_only=True))
def test_hmc_shapes_and_dtypes(r):
    s = S.HamiltonianMonteCarlo(
        HarmonicModel(), step_size=0.1, n_leapfrog_steps=2, dtype=r["dtype"]
    )
    _check_sampler(s, r, ["mean", "var", "energy", "acceptance_rate"])


@SETTINGS
@given(runs(), st.sampled_from(["gd", "nesterov"]))
def test_descent_samplers_shapes_dtypes_and_closed_form(r, kind):
    h = 0.1
    cls = S.GradientDescentSampler if kind == "gd" else S.NesterovSampler
    s = cls(HarmonicModel(), step_size=h, dtype=r["dtype"])
    _check_sampler(s, r, ["energy"])
    if kind == "gd":  # x_n = (1 - h)^n x_0 for E = |x|^2 / 2
        x0 = torch.randn((r["batch"], *r["shape"]), generator=gen(2), dtype=r["dtype"])
        out = s.sample(x=x0, n_steps=r["n_steps"])
        tol = 1e-6 if r["dtype"] == torch.float32 else 1e-12
        assert torch.allclose(out, x0 * (1 - h) ** r["n_steps"], atol=tol, rtol=tol)


@SETTINGS
@given(runs(flat_only=True), st.sampled_from(["euler", "heun"]))
def test_flow_sampler_ode_shapes_and_dtypes(r, integrator):
    class Field(torch.nn.Module):
        def forward(self, x, t):
            return -x + t.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)

    s = S.FlowSampler(Field(), integrator=integrator, dtype=r["dtype"])
    b, shape, n = r["batch"], r["shape"], r["n_steps"]
    x0 = torch.randn((b, *shape), generator=gen(1), dtype=r["dtype"])
    out = s.sample(x=x0, n_steps=n)
    assert out.shape == x0.shape and out.dtype == r["dtype"]
    traj = s.sample(x=x0, n_steps=n, thin=r["thin"], return_trajectory=True)
    assert traj.shape == (b, n // r["thin"], *shape)


# ---------------------------------------------------------------------------- interpolants
INTERPOLANTS = {
    "linear": IP.LinearInterpolant,
    "cosine": IP.CosineInterpolant,
    "vp": IP.VariancePreservingInterpolant,
}


@SETTINGS
@given(
    st.sampled_from(sorted(INTERPOLANTS)),
    st.integers(1, 5),
    event_shapes,
    DTYPES,
    st.floats(0.05, 0.95),
)
def test_interpolant_shapes_dtypes_and_velocity(name, b, shape, dtype, t0):
    ip = INTERPOLANTS[name]()
    x0 = torch.randn((b, *shape), generator=gen(3), dtype=dtype)
    x1 = torch.randn((b, *shape), generator=gen(4), dtype=dtype)
    t = torch.full((b,), t0, dtype=dtype)
    xt, ut = ip.interpolate(x0, x1, t)
    assert xt.shape == ut.shape == x0.shape and xt.dtype == ut.dtype == dtype
    # u_t is the time derivative of x_t: central difference in float64
    h = 1e-5
    x0d, x1d = x0.double(), x1.double()
    xp, _ = ip.interpolate(x0d, x1d, torch.full((b,), t0 + h, dtype=torch.float64))
    xm, _ = ip.interpolate(x0d, x1d, torch.full((b,), t0 - h, dtype=torch.float64))
    fd = (xp - xm) / (2 * h)
    tol = 1e-5 if dtype == torch.float64 else 1e-4
    assert torch.allclose(ut.double(), fd, atol=tol * (1 + fd.abs().max().item()), rtol=tol)
    # score <-> velocity conversions are inverse to each other away from the end points
    v = torch.randn((b, *shape), generator=gen(5), dtype=torch.float64)
    s = ip.velocity_to_score(v, xt.double(), t.double())
    back = ip.score_to_velocity(s, xt.double(), t.double())
    assert back.shape == v.shape
    assert torch.allclose(back, v, atol=1e-6 * (1 + v.abs().max().item()))
    for form in ("constant", "SBDM", "sigma", "linear", "decreasing", "increasing-decreasing"):
        d = ip.compute_diffusion(xt, t, form=form)
        assert torch.broadcast_shapes(d.shape, xt.shape) == xt.shape


@SETTINGS
@given(st.sampled_from(sorted(INTERPOLANTS)), st.integers(1, 4), event_shapes, DTYPES)
def test_interpolant_end_points(name, b, shape, dtype):
    ip = INTERPOLANTS[name]()
    x0 = torch.randn((b, *shape), generator=gen(6), dtype=dtype)
    x1 = torch.randn((b, *shape), generator=gen(7), dtype=dtype)
    at1, _ = ip.interpolate(x0, x1, torch.ones(b, dtype=dtype))
    assert torch.allclose(at1, x1, atol=1e-5)  # t = 1 is data for every interpolant
    if name != "vp":  # VP's alpha(0) = e^{-5.025} > 0: noise end is approximate by design
        at0, _ = ip.interpolate(x0, x1, torch.zeros(b, dtype=dtype))
        assert torch.allclose(at0, x0, atol=1e-5)


# ---------------------------------------------------------------------------- integrators
# one step of dx/dt = lam x from x gives x R(h lam) with R the stability polynomial
STABILITY = {
    "euler": 1,
    "heun": 2,
    "midpoint": 2,
    "adaptive_heun": 2,
    "bosh3": 3,
    "rk4": 4,
    "rk438": 4,
}


@SETTINGS
@given(
    st.sampled_from(sorted(STABILITY)),
    st.integers(1, 5),
    event_shapes,
    DTYPES,
    st.floats(0.01, 0.5),
    st.floats(-2.0, 1.0),
)
def test_rk_step_shapes_dtypes_and_stability_polynomial(name, b, shape, dtype, h, lam):
    integ = I.get_integrator(name, dtype=dtype)
    x = torch.randn((b, *shape), generator=gen(8), dtype=dtype)
    out = integ.step({"x": x}, h, drift=lambda y, t: lam * y)
    assert set(out) >= {"x"} and out["x"].shape == x.shape and out["x"].dtype == dtype
    z = h * lam
    r = sum(z**k / math.factorial(k) for k in range(STABILITY[name] + 1))
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert torch.allclose(out["x"], x * r, atol=tol, rtol=tol)
    assert torch.equal(x, torch.randn((b, *shape), generator=gen(8), dtype=dtype))  # not mutated


@SETTINGS
@given(st.sampled_from(["euler", "heun"]), st.integers(1, 5), event_shapes, DTYPES)
def test_sde_step_shapes_dtypes_and_noise_scaling(name, b, shape, dtype):
    integ = I.get_integrator(name, dtype=dtype)
    x = torch.randn((b, *shape), generator=gen(9), dtype=dtype)
    noise = torch.randn((b, *shape), generator=gen(10), dtype=dtype)
    h, sigma = 0.04, 0.7
    zero = lambda y, t: torch.zeros_like(y)  # noqa: E731
    out = integ.step({"x": x}, h, drift=zero, noise=noise, noise_scale=sigma)["x"]
    assert out.shape == x.shape and out.dtype == dtype
    # zero drift: x' = x + sigma sqrt(2 h) xi exactly
    assert torch.allclose(out, x + sigma * math.sqrt(2 * h) * noise, atol=1e-6)
    drawn = integ.step({"x": x}, h, drift=zero, noise_scale=sigma, generator=gen(1))["x"]
    assert drawn.shape == x.shape and drawn.dtype == dtype


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 4), DTYPES, st.floats(0.01, 0.3), st.integers(1, 5))
def test_leapfrog_shapes_dtypes_and_reversibility(b, d, dtype, h, n):
    lf = I.LeapfrogIntegrator(dtype=dtype)
    x = torch.randn((b, d), generator=gen(11), dtype=dtype)
    p = torch.randn((b, d), generator=gen(12), dtype=dtype)
    drift = lambda y, t: -y  # noqa: E731  (U = |x|^2 / 2)
    out = lf.integrate({"x": x, "p": p}, h, n, drift=drift)
    assert out["x"].shape == x.shape and out["p"].shape == p.shape
    assert out["x"].dtype == out["p"].dtype == dtype
    # time reversal: flip momentum, integrate again, flip back -> the start
    back = lf.integrate({"x": out["x"], "p": -out["p"]}, h, n, drift=drift)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(back["x"], x, atol=tol) and torch.allclose(-back["p"], p, atol=tol)
    # the harmonic energy error of leapfrog is O(h^2)
    e0 = 0.5 * (x**2 + p**2).sum(-1)
    e1 = 0.5 * (out["x"] ** 2 + out["p"] ** 2).sum(-1)
    assert ((e1 - e0).abs() <= h**2 * e0 + 1e-5).all()
