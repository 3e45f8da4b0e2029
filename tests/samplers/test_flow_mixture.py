"""FlowSampler on Gaussian-mixture data with the exact (non-affine) marginal fields.

References are independent of the library (`_support.mixture_paths`): the schedules are written
from their documented formulas, the fields are closed forms, and in 1-D the exact ODE flow map
from ``t0`` to ``t1`` is the monotone rearrangement $F_{t_1}^{-1}\\circ F_{t_0}$ of the
marginal CDFs (bisection in float64). The 2-D and SDE laws are compared with the mixture's
closed-form moments, probabilities and CDF at tolerances of the sample size.
"""

from __future__ import annotations

import math

import pytest
import torch
from _support.mixture_paths import F64, MixtureField, mixture_1d, mixture_2d, schedules

from torchebm.integrators import (
    AdaptiveHeunIntegrator,
    Bosh3Integrator,
    Dopri5Integrator,
    Dopri8Integrator,
)
from torchebm.samplers import FlowSampler

PATHS = ("linear", "cosine", "vp", "ve", "edm")
# the VP ODE runs to 1 - sample_eps: the closed forms are singular at exactly t = 1
T1 = {"vp": 0.999}
KW = {"vp": {"sample_eps": 1e-3}}


def _start(path: str, n: int = 24) -> torch.Tensor:
    """Start points at t = 0: standard normal times sigma(0) (80 on the VE paths)."""
    z = torch.randn(n, 1, dtype=F64, generator=torch.Generator().manual_seed(0))
    return z * float(schedules(path, torch.tensor(0.0, dtype=F64))[2])


def _transport_error(path, integrator, n_steps=None, scale=1.0, x0=None):
    m = mixture_1d()
    x0 = _start(path) if x0 is None else x0
    ref = m.transport(path, x0, 0.0, T1.get(path, 1.0))
    fs = FlowSampler(
        MixtureField(m, path, scale=scale),
        interpolant=path,
        integrator=integrator,
        dtype=F64,
        **KW.get(path, {}),
    )
    return (fs.sample(x=x0.clone(), n_steps=n_steps) - ref).abs().max().item()


@pytest.mark.parametrize("path", PATHS)
def test_rk4_end_points_are_the_exact_transport_of_the_mixture(path):
    err = _transport_error(path, "rk4", n_steps=200)
    assert err < 2e-5, f"{path}: rk4 end points off the exact transport by {err:.2e}"


ADAPTIVE = {
    "dopri5": (Dopri5Integrator, 1e-9, 1e-7),
    "dopri8": (Dopri8Integrator, 1e-9, 1e-7),
    "bosh3": (Bosh3Integrator, 1e-8, 1e-6),
    "adaptive_heun": (AdaptiveHeunIntegrator, 1e-6, 1e-4),
}


@pytest.mark.parametrize("path", ["linear", "edm"])
@pytest.mark.parametrize("name", sorted(ADAPTIVE))
def test_adaptive_end_points_are_the_exact_transport_within_tolerance(name, path):
    cls, tol, bound = ADAPTIVE[name]
    err = _transport_error(path, cls(atol=tol, rtol=tol, dtype=F64))
    assert err < bound, f"{name}/{path}: error {err:.2e} at atol = rtol = {tol}"


ORDERS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "rk438": 4}


@pytest.mark.parametrize("path", ["linear", "cosine", "edm"])
@pytest.mark.parametrize("name", sorted(ORDERS))
def test_fixed_step_error_falls_at_the_integrators_order(name, path):
    # one trajectory per start point; the error of its end point against the exact map
    x0 = _start(path, 3)
    n = {1: 100, 2: 50, 4: 50}[ORDERS[name]] * (4 if path == "edm" else 1)
    e1 = _transport_error(path, name, n_steps=n, x0=x0)
    e2 = _transport_error(path, name, n_steps=2 * n, x0=x0)
    order = math.log2(e1 / e2)
    assert abs(order - ORDERS[name]) < 0.3, f"{name}/{path}: errors {e1:.2e} -> {e2:.2e}"


def _hand_rk4(field, x: torch.Tensor, n: int) -> torch.Tensor:
    """Classic RK4 in float64 from t = 0 to 1 in ``n`` steps (the reference solve)."""
    h = 1.0 / n
    for i in range(n):
        t = torch.full((x.shape[0],), i * h, dtype=F64)
        k1 = field(x, t)
        k2 = field(x + 0.5 * h * k1, t + 0.5 * h)
        k3 = field(x + 0.5 * h * k2, t + 0.5 * h)
        k4 = field(x + h * k3, t + h)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


@pytest.mark.parametrize("name", ["heun", "rk4"])
def test_fixed_step_error_in_2d_falls_at_the_order_against_a_fine_solve(name):
    field = MixtureField(mixture_2d(), "cosine")
    x0 = torch.tensor([[-1.0, 0.5], [0.8, 1.2], [0.1, -1.5]], dtype=F64)
    ref = _hand_rk4(field, x0, 1000)  # error ~ 1e-12: rk4 at 50 steps is ~1e-7 off

    def err(n: int) -> float:
        fs = FlowSampler(field, interpolant="cosine", integrator=name, dtype=F64)
        return (fs.sample(x=x0.clone(), n_steps=n) - ref).abs().max().item()

    e1, e2 = err(50), err(100)
    order = ORDERS[name]
    assert abs(math.log2(e1 / e2) - order) < 0.3, f"{name}: errors {e1:.2e} -> {e2:.2e}"


def _check_1d_law(x: torch.Tensor, label: str) -> None:
    """Mean, variance, P(x > 0) within 5 standard errors and the Kolmogorov-Smirnov
    distance to the exact mixture CDF below its 0.1% quantile (1.95 / sqrt(n))."""
    m, x = mixture_1d(), x[:, 0]
    n = x.shape[0]
    mean, var = m.mean().item(), m.cov().item()
    sd = m.S[:, 0, 0].sqrt()
    p_pos = (m.w * torch.special.ndtr(m.m[:, 0] / sd)).sum().item()
    centred = (x - x.mean()) ** 2
    checks = {
        "mean": (x.mean().item(), mean, math.sqrt(var / n)),
        "var": (x.var().item(), var, centred.std().item() / math.sqrt(n)),
        "P(x > 0)": ((x > 0).double().mean().item(), p_pos, math.sqrt(p_pos * (1 - p_pos) / n)),
    }
    for key, (got, want, se) in checks.items():
        assert abs(got - want) < 5 * se, f"{label}: {key} {got:.4f}, exact {want:.4f} (se {se:.4f})"
    f = m.cdf("linear", x.sort().values, 1.0)  # the data law: t = 1 of the linear path
    i = torch.arange(1, n + 1, dtype=F64)
    ks = max((i / n - f).max().item(), (f - (i - 1) / n).max().item()) * math.sqrt(n)
    assert ks < 1.95, f"{label}: KS distance {ks:.2f} / sqrt(n) to the mixture"


def test_ode_from_noise_samples_the_1d_mixture():
    m, n = mixture_1d(), 20000
    fs = FlowSampler(MixtureField(m, "linear"), integrator="rk4", dtype=F64)
    x = fs.sample(n_samples=n, dim=1, n_steps=40, generator=torch.Generator().manual_seed(0))
    _check_1d_law(x, "ode/linear/rk4")


def test_ode_from_noise_samples_the_2d_mixture():
    m, n = mixture_2d(), 20000
    fs = FlowSampler(MixtureField(m, "linear"), integrator="rk4", dtype=F64)
    x = fs.sample(n_samples=n, dim=2, n_steps=40, generator=torch.Generator().manual_seed(0))
    mean, cov = m.mean(), m.cov()
    se_mean = (cov.diagonal() / n).sqrt()
    assert ((x.mean(0) - mean).abs() < 5 * se_mean).all(), (x.mean(0), mean)
    d = x - x.mean(0)
    prods = d[:, :, None] * d[:, None, :]
    se_cov = prods.std(0) / math.sqrt(n)
    assert ((prods.mean(0) - cov).abs() < 5 * se_cov).all(), (prods.mean(0), cov)
    # E_p[posterior_k(X)] = w_k exactly under the mixture p: the component proportions
    post = m.at("linear", x, 1.0)["posterior"]
    se_post = post.std(0) / math.sqrt(n)
    assert ((post.mean(0) - m.w).abs() < 5 * se_post).all(), (post.mean(0), m.w)
    # half-plane probabilities P(u.x > 0) = sum_k w_k Phi(u.m_k / sqrt(u' S_k u))
    for u in ([1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]):
        u = torch.tensor(u, dtype=F64)
        q = m.w * torch.special.ndtr(m.m @ u / torch.einsum("i,kij,j->k", u, m.S, u).sqrt())
        q = q.sum().item()
        got = (x @ u > 0).double().mean().item()
        assert abs(got - q) < 5 * math.sqrt(q * (1 - q) / n), (u, got, q)


SDE_CASES = [
    ("linear", "SBDM", "Mean"),  # the defaults
    ("linear", "constant", None),
    ("cosine", "SBDM", None),
    ("vp", "SBDM", None),
]


@pytest.mark.parametrize("path,form,last_step", SDE_CASES)
def test_sde_preserves_the_mixture_marginals(path, form, last_step):
    m, n = mixture_1d(), 20000
    fs = FlowSampler(
        MixtureField(m, path),
        interpolant=path,
        mode="sde",
        diffusion_form=form,
        last_step=last_step,
        dtype=F64,
    )
    x = fs.sample(n_samples=n, dim=1, generator=torch.Generator().manual_seed(0))
    _check_1d_law(x, f"sde/{path}/{form}/{last_step}")
