r"""Training reaches the closed-form optimum: each objective's minimiser over small parametric
models (a quadratic energy $\tfrac12 x^\top P x - h^\top x$, an affine field $Ax + b$) on 2-D
Gaussian data, against float64 references written here (sample moments, least squares on
the same draws, Gaussian conditional expectations, quadrature).

Every loss here is quadratic in the parameters, so one Newton step from any point is its
exact minimiser on the batch (what training converges to)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from torchebm.losses import (
    ContrastiveDivergence,
    DenoisingScoreMatching,
    EnergyMatchingLoss,
    EquilibriumMatchingLoss,
    FlowMatchingLoss,
    PersistentContrastiveDivergence,
    ScoreMatching,
    SlicedScoreMatching,
)

F64 = torch.float64
MEAN = torch.tensor([1.0, -0.5], dtype=F64)
COV = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=F64)
I2 = torch.eye(2, dtype=F64)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_data(n: int, seed: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` draws of N(MEAN, COV) and their (1/n) sample mean and covariance."""
    x = MEAN + torch.randn(n, 2, generator=gen(seed), dtype=F64) @ torch.linalg.cholesky(COV).T
    m = x.mean(0)
    return x, m, (x - m).T @ (x - m) / n


def sym(p: torch.Tensor) -> torch.Tensor:
    """2x2 symmetric matrix from its upper triangle ``(p00, p01, p11)``."""
    return torch.stack([torch.stack([p[0], p[1]]), torch.stack([p[1], p[2]])])


class QuadEnergy(nn.Module):
    r"""$E(x) = \tfrac12 x^\top P x - h^\top x$, $P$ symmetric (3 parameters), $h$ learnable."""

    def __init__(self, prec: torch.Tensor = I2, h: torch.Tensor | None = None):
        super().__init__()
        self.p = nn.Parameter(torch.stack([prec[0, 0], prec[0, 1], prec[1, 1]]).clone())
        self.h = nn.Parameter(torch.zeros(2, dtype=F64) if h is None else h.clone())

    def forward(self, x: torch.Tensor, **kw) -> torch.Tensor:
        return 0.5 * ((x @ sym(self.p)) * x).sum(1) - x @ self.h

    def prec(self) -> torch.Tensor:
        return sym(self.p.detach())


class Affine(nn.Module):
    """``v(x, t) = A x + b`` (ignores ``t``)."""

    def __init__(self):
        super().__init__()
        self.A = nn.Parameter(torch.zeros(2, 2, dtype=F64))
        self.b = nn.Parameter(torch.zeros(2, dtype=F64))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x @ self.A.T + self.b


def newton_minimise(model: nn.Module, loss) -> None:
    """One Newton step on ``loss()`` (quadratic in the parameters: its exact minimiser)."""
    ps = list(model.parameters())
    grads = torch.autograd.grad(loss(), ps, create_graph=True)
    g = torch.cat([x.reshape(-1) for x in grads])
    rows = [torch.autograd.grad(gi, ps, retain_graph=True) for gi in g]
    hess = torch.stack([torch.cat([r.reshape(-1) for r in row]) for row in rows])
    step = torch.linalg.solve(hess, g.detach())
    with torch.no_grad():
        for p, s in zip(ps, step.split([p.numel() for p in ps])):
            p -= s.reshape(p.shape)


def lstsq_affine(xt: torch.Tensor, target: torch.Tensor, w: torch.Tensor | None = None):
    """Weighted least squares of ``target`` on ``[xt, 1]``: ``(A, b)`` with target ~ A x + b."""
    z = torch.cat([xt, torch.ones(xt.shape[0], 1, dtype=F64)], 1)
    sw = torch.ones(xt.shape[0], dtype=F64) if w is None else w.sqrt()
    sol = torch.linalg.lstsq(z * sw[:, None], target * sw[:, None]).solution
    return sol[:2].T, sol[2]


def fit_tolerance(xt, target, gain, shift, w=None, k=4.0):
    r"""``k`` standard errors of the least-squares fit ``(A, b)`` of ``target`` on ``xt`` at
    the reference ``(gain, shift)``, as the Frobenius norms of the A and b parts: the
    sandwich $H^{-1} V H^{-1}/n$, $H = \overline{w zz^\top}$, $V = \overline{w^2 (z z^\top)
    \otimes (r r^\top)}$, $z = [x, 1]$, $r$ the residuals, from an independent batch."""
    n = xt.shape[0]
    w = torch.ones(n, dtype=F64) if w is None else w
    z = torch.cat([xt, torch.ones(n, 1, dtype=F64)], 1)
    r = xt @ gain.T + shift - target
    g = (w[:, None, None] * z[:, :, None] * r[:, None, :]).reshape(n, -1)  # (n, 3*2)
    h_inv = torch.linalg.inv(torch.kron((w[:, None] * z).T @ z / n, torch.eye(2, dtype=F64)))
    var = torch.diagonal(h_inv @ (g.T @ g / n) @ h_inv) / n
    var = var.reshape(3, 2)
    return k * var[:2].sum().sqrt(), k * var[2].sum().sqrt()


def fixed_t(t0: float):
    def sampler(batch, *, device, dtype, generator):
        return torch.full((batch,), t0, device=device, dtype=dtype)

    return sampler


def recorded_uniform(store: list, seed: int):
    """A time sampler drawing U(0, 1) from its own generator and keeping what it returned."""
    g = gen(seed)

    def sampler(batch, *, device, dtype, generator):
        store.append(torch.rand(batch, generator=g, dtype=dtype))
        return store[-1]

    return sampler


def path(name: str, t: torch.Tensor):
    """(alpha, alpha', sigma, sigma') of the interpolants, written out from their formulas."""
    if name == "linear":
        return t, torch.ones_like(t), 1 - t, -torch.ones_like(t)
    if name == "cosine":
        h = 0.5 * math.pi
        return torch.sin(h * t), h * torch.cos(h * t), torch.cos(h * t), -h * torch.sin(h * t)
    if name == "vp":  # beta from 20 (t = 0) to 0.1 (t = 1)
        s = 1 - t
        log_a = -0.25 * s**2 * 19.9 - 0.5 * s * 0.1
        dlog = 0.5 * s * 19.9 + 0.05
        a = torch.exp(log_a)
        sig = torch.sqrt(1 - a**2)
        return a, a * dlog, sig, -(a**2) * dlog / sig
    lo, hi = 0.01, 5.0  # "ve", geometric
    sig = hi * (lo / hi) ** t
    return torch.ones_like(t), torch.zeros_like(t), sig, sig * math.log(lo / hi)


def interpolant_of(name: str):
    from torchebm.interpolants import VarianceExplodingInterpolant

    return VarianceExplodingInterpolant(0.01, 5.0) if name == "ve" else name


# --------------------------------------------------------------------------- score matching
def test_exact_score_matching_minimiser_is_the_sample_mle():
    x, m, c = gaussian_data(4000)
    model = QuadEnergy()
    loss = ScoreMatching(model, dtype=F64)
    newton_minimise(model, lambda: loss(x))
    prec = torch.linalg.inv(c)
    torch.testing.assert_close(model.prec(), prec, rtol=1e-9, atol=0)
    torch.testing.assert_close(model.h.detach(), prec @ m, rtol=1e-9, atol=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda mo: ScoreMatching(mo, hessian_method="hutchinson", hutchinson_samples=1, dtype=F64),
        lambda mo: ScoreMatching(mo, hessian_method="approx", hutchinson_samples=1, dtype=F64),
        lambda mo: SlicedScoreMatching(mo, n_projections=1, dtype=F64),
        lambda mo: SlicedScoreMatching(mo, projection_type="gaussian", dtype=F64),
        lambda mo: SlicedScoreMatching(
            mo, projection_type="sphere", variance_reduction=True, dtype=F64
        ),
    ],
    ids=["hutchinson", "approx", "ssm-rademacher", "ssm-gaussian", "ssm-vr-sphere"],
)
def test_stochastic_score_matching_minimiser_is_the_sample_mle(make):
    # random probes add O(1/sqrt(n)) noise to the minimiser (relative, unit-scale parameters)
    n = 40_000
    x, m, c = gaussian_data(n)
    model = QuadEnergy()
    loss = make(model)
    newton_minimise(model, lambda: loss(x, generator=gen(1)))
    prec = torch.linalg.inv(c)
    tol = 4 / math.sqrt(n)
    assert (model.prec() - prec).norm() / prec.norm() < tol
    assert (model.h.detach() - prec @ m).norm() / (prec @ m).norm() < tol


def test_denoising_score_matching_minimiser_is_the_smoothed_gaussian():
    n, sigma = 40_000, 0.5
    x, m, c = gaussian_data(n)
    model = QuadEnergy()
    loss = DenoisingScoreMatching(model, noise_scale=sigma, dtype=F64)
    newton_minimise(model, lambda: loss(x, generator=gen(1)))
    prec = torch.linalg.inv(c + sigma**2 * I2)  # data convolved with N(0, sigma^2 I)
    tol = 4 / math.sqrt(n)
    assert (model.prec() - prec).norm() / prec.norm() < tol
    assert (model.h.detach() - prec @ m).norm() / (prec @ m).norm() < tol


# --------------------------------------------------------------------------- contrastive divergence
class ExactSampler(nn.Module):
    """Exact draws from the quadratic energy's Gaussian N(P^-1 h, P^-1), whatever the start."""

    def __init__(self, model: QuadEnergy):
        super().__init__()
        self.energy = model

    def sample(self, x=None, n_steps=1, generator=None, **kw):
        cov = torch.linalg.inv(self.energy.prec())
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return cov @ self.energy.h.detach() + z @ torch.linalg.cholesky(cov).T


def nll_gradient(prec, h, m, c):
    r"""$\partial_\theta$ of the mean negative log-likelihood: data minus model moments of
    $\partial_\theta E$ ($\partial_P E = \tfrac12 xx^\top$ (off-diagonal twice), $\partial_h E = -x$)."""
    cov = torch.linalg.inv(prec)
    mu = cov @ h
    d = 0.5 * (c + torch.outer(m, m)) - 0.5 * (cov + torch.outer(mu, mu))
    return torch.cat([torch.stack([d[0, 0], 2 * d[0, 1], d[1, 1]]), mu - m])


@pytest.mark.parametrize("cls", [ContrastiveDivergence, PersistentContrastiveDivergence])
def test_contrastive_divergence_gradient_is_the_likelihood_gradient(cls):
    # with exact negatives the CD gradient is unbiased for the NLL gradient: zero at the MLE
    x, m, c = gaussian_data(2048)
    calls = 200
    mle = torch.linalg.inv(c)
    for prec, h in ((mle, mle @ m), (1.3 * mle, mle @ m + torch.tensor([0.3, -0.2], dtype=F64))):
        model = QuadEnergy(prec, h)
        loss = cls(model, ExactSampler(model), k_steps=1, energy_reg_weight=0.0, dtype=F64)
        g = gen(1)
        draws = torch.stack(
            [
                torch.cat(torch.autograd.grad(loss(x, generator=g)[0], [model.p, model.h]))
                for _ in range(calls)
            ]
        )
        mean, se = draws.mean(0), draws.std(0) / math.sqrt(calls)
        expected = nll_gradient(prec, h, m, c)
        assert ((mean - expected).abs() < 5 * se).all(), (mean, expected, se)
    # away from the MLE the gradient is resolved, and points the likelihood's way
    assert expected.norm() > 10 * se.norm() and torch.dot(mean, expected) > 0


# --------------------------------------------------------------------------- flow matching
@pytest.mark.parametrize("name", ["linear", "cosine", "vp", "ve"])
@pytest.mark.parametrize("negate", [False, True])
def test_flow_matching_minimiser_is_the_regression_of_the_velocity(name, negate):
    # at one time t the affine minimiser is the least-squares fit of u_t on x_t (same draws)
    x1, _, _ = gaussian_data(4000)
    x0 = torch.randn(x1.shape, generator=gen(1), dtype=F64)
    t0 = 0.3
    model = Affine()
    loss = FlowMatchingLoss(
        model,
        interpolant=interpolant_of(name),
        t_sampler=fixed_t(t0),
        negate_velocity=negate,
        dtype=F64,
    )
    newton_minimise(model, lambda: loss(x1, x0=x0))
    a, da, s, ds = path(name, torch.tensor(t0, dtype=F64))
    u = da * x1 + ds * x0
    ref_a, ref_b = lstsq_affine(a * x1 + s * x0, -u if negate else u)
    torch.testing.assert_close(model.A.detach(), ref_a, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(model.b.detach(), ref_b, rtol=1e-8, atol=1e-10)


def test_flow_matching_minimiser_is_the_gaussian_conditional_velocity():
    # population form: E[x1 - x0 | x_t] = K S^-1 (x - t m) + m, S = t^2 C + (1-t)^2 I,
    # K = t C - (1-t) I (sample moments of the fixed data; fresh noise: O(1/sqrt(n)) error)
    n, t0 = 100_000, 0.6
    x1, m, c = gaussian_data(n)
    model = Affine()
    loss = FlowMatchingLoss(model, t_sampler=fixed_t(t0), dtype=F64)
    newton_minimise(model, lambda: loss(x1, generator=gen(1)))
    gain = (t0 * c - (1 - t0) * I2) @ torch.linalg.inv(t0**2 * c + (1 - t0) ** 2 * I2)
    shift = m - gain @ (t0 * m)
    z0 = torch.randn(x1.shape, generator=gen(7), dtype=F64)  # an independent batch
    tol_a, tol_b = fit_tolerance(t0 * x1 + (1 - t0) * z0, x1 - z0, gain, shift)
    assert (model.A.detach() - gain).norm() < tol_a < 0.05 * gain.norm()
    assert (model.b.detach() - shift).norm() < tol_b < 0.05 * shift.norm()


def test_flow_matching_time_weight_moves_the_minimiser_as_weighted_least_squares():
    x1, _, _ = gaussian_data(4000)
    x0 = torch.randn(x1.shape, generator=gen(1), dtype=F64)
    times: list = []
    model = Affine()
    loss = FlowMatchingLoss(
        model, t_sampler=recorded_uniform(times, 2), loss_weight_fn=lambda t: t**2, dtype=F64
    )
    newton_minimise(model, lambda: loss(x1, x0=x0))
    t = times[-1][:, None]
    ref_a, ref_b = lstsq_affine(t * x1 + (1 - t) * x0, x1 - x0, w=times[-1] ** 2)
    torch.testing.assert_close(model.A.detach(), ref_a, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(model.b.detach(), ref_b, rtol=1e-8, atol=1e-10)


# --------------------------------------------------------------------------- equilibrium matching
def eqm_ct(kind: str, t: torch.Tensor, a: float = 0.8, lam: float = 4.0) -> torch.Tensor:
    if kind == "truncated":
        return lam * torch.clamp((1 - t) / (1 - a), max=1.0)
    return lam * (1 - t) if kind == "linear" else torch.full_like(t, lam)


@pytest.mark.parametrize("ct", ["truncated", "linear", "constant"])
def test_equilibrium_matching_minimiser_is_the_ct_weighted_regression(ct):
    # time-invariant field, times spread over [0, 1]: the least-squares fit of -c(t) u_t on x_t
    x1, _, _ = gaussian_data(4000)
    x0 = torch.randn(x1.shape, generator=gen(1), dtype=F64)
    times: list = []
    model = Affine()
    loss = EquilibriumMatchingLoss(
        model,
        ct=ct,
        ct_threshold=0.7,
        ct_multiplier=3.0,
        t_sampler=recorded_uniform(times, 2),
        dtype=F64,
    )
    newton_minimise(model, lambda: loss(x1, x0=x0))
    t = times[-1]
    target = -eqm_ct(ct, t, 0.7, 3.0)[:, None] * (x1 - x0)
    ref_a, ref_b = lstsq_affine(t[:, None] * x1 + (1 - t[:, None]) * x0, target)
    torch.testing.assert_close(model.A.detach(), ref_a, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(model.b.detach(), ref_b, rtol=1e-8, atol=1e-10)


def test_equilibrium_matching_minimiser_under_uniform_times_is_the_quadrature_optimum():
    # population optimum of a time-invariant affine field: solve
    # (int M_zz dt) theta = int -c(t) M_zu dt, z = [x_t, 1], by Gauss-Legendre on [0, .8], [.8, 1]
    n = 250_000
    x1, m, c = gaussian_data(n)
    model = Affine()
    loss = EquilibriumMatchingLoss(model, dtype=F64)
    newton_minimise(model, lambda: loss(x1, generator=gen(1)))
    nodes, weights = [], []
    for lo, hi in ((0.0, 0.8), (0.8, 1.0)):
        z, w = np.polynomial.legendre.leggauss(64)
        nodes.append(0.5 * (hi - lo) * z + 0.5 * (hi + lo))
        weights.append(0.5 * (hi - lo) * w)
    mzz, mzu = torch.zeros(3, 3, dtype=F64), torch.zeros(3, 2, dtype=F64)
    for t, w in zip(np.concatenate(nodes), np.concatenate(weights)):
        t = float(t)
        ct = 4.0 * min(1.0, (1 - t) / 0.2)
        s = t**2 * c + (1 - t) ** 2 * I2 + t**2 * torch.outer(m, m)  # E[x_t x_t^T]
        k = t * c - (1 - t) * I2 + t * torch.outer(m, m)  # E[x_t u^T]
        mzz += w * torch.cat(
            [torch.cat([s, t * m[:, None]], 1), torch.cat([t * m, torch.ones(1)])[None]]
        )
        mzu -= w * ct * torch.cat([k, m[None]])
    theta = torch.linalg.solve(mzz, mzu)
    gain, shift = theta[:2].T, theta[2]
    z0 = torch.randn(x1.shape, generator=gen(7), dtype=F64)  # an independent batch
    t = torch.rand(n, 1, generator=gen(8), dtype=F64)
    target = -4.0 * torch.clamp((1 - t) / 0.2, max=1.0) * (x1 - z0)
    tol_a, tol_b = fit_tolerance(t * x1 + (1 - t) * z0, target, gain, shift)
    assert (model.A.detach() - gain).norm() < tol_a < 0.05 * gain.norm()
    assert (model.b.detach() - shift).norm() < tol_b < 0.05 * shift.norm()


@pytest.mark.parametrize("prediction", ["noise", "score"])
@pytest.mark.parametrize("name", ["linear", "cosine", "vp"])
def test_equilibrium_matching_noise_and_score_minimisers(prediction, name):
    # noise: E[x0 | x_t]; score: -E[x0 | x_t] / sigma_t (a constant weight at one t moves nothing)
    x1, _, _ = gaussian_data(4000)
    x0 = torch.randn(x1.shape, generator=gen(1), dtype=F64)
    t0 = 0.4
    model = Affine()
    loss = EquilibriumMatchingLoss(
        model,
        prediction=prediction,
        interpolant=name,
        loss_weight="velocity",
        time_invariant=False,
        t_sampler=fixed_t(t0),
        dtype=F64,
    )
    newton_minimise(model, lambda: loss(x1, x0=x0))
    a, _, s, _ = path(name, torch.tensor(t0, dtype=F64))
    ref_a, ref_b = lstsq_affine(a * x1 + s * x0, x0 if prediction == "noise" else -x0 / s)
    torch.testing.assert_close(model.A.detach(), ref_a, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(model.b.detach(), ref_b, rtol=1e-8, atol=1e-10)


# --------------------------------------------------------------------------- energy matching
@pytest.mark.parametrize("cutoff", [0.5, 0.8, 1.0])
def test_energy_matching_flow_minimiser_is_the_gated_symmetric_regression(cutoff):
    # -grad V = -P x + h (P symmetric) fitted to u_t with weights clip((1-t)/(1-t_c), 0, 1)
    x1, _, _ = gaussian_data(4000)
    x0 = torch.randn(x1.shape, generator=gen(1), dtype=F64)
    times: list = []
    model = QuadEnergy()
    loss = EnergyMatchingLoss(
        model,
        coupling="independent",
        sigma=0.0,
        flow_weight_cutoff=cutoff,
        lambda_cd=0.0,
        t_sampler=recorded_uniform(times, 2),
        dtype=F64,
    )
    newton_minimise(model, lambda: loss(x1, x0=x0))
    t = times[-1]
    xt = t[:, None] * x1 + (1 - t[:, None]) * x0
    w = torch.clamp((1 - t) / (1 - cutoff), 0, 1) if cutoff < 1 else torch.ones_like(t)
    zero, one = torch.zeros_like(t), torch.ones_like(t)
    # residual rows: field_1 = -(p00 x1 + p01 x2) + h1, field_2 = -(p01 x1 + p11 x2) + h2
    design = torch.cat(
        [
            torch.stack([-xt[:, 0], -xt[:, 1], zero, one, zero], 1),
            torch.stack([zero, -xt[:, 0], -xt[:, 1], zero, one], 1),
        ]
    )
    sw = w.sqrt().repeat(2)[:, None]
    u = x1 - x0
    sol = torch.linalg.lstsq(design * sw, torch.cat([u[:, 0], u[:, 1]])[:, None] * sw).solution
    torch.testing.assert_close(model.p.detach(), sol[:3, 0], rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(model.h.detach(), sol[3:, 0], rtol=1e-8, atol=1e-10)


def test_energy_matching_flow_noise_widens_the_fitted_gaussian():
    # at one t with x_t + sigma xi: -P = K (S + sigma^2 I)^-1, K = t C - (1-t) I
    n, t0, sigma = 100_000, 0.5, 0.3
    x1, m, c = gaussian_data(n)
    model = QuadEnergy()
    loss = EnergyMatchingLoss(
        model,
        coupling="independent",
        sigma=sigma,
        lambda_cd=0.0,
        t_sampler=fixed_t(t0),
        dtype=F64,
    )
    newton_minimise(model, lambda: loss(x1, generator=gen(1)))
    s = t0**2 * c + ((1 - t0) ** 2 + sigma**2) * I2
    gain = (t0 * c - (1 - t0) * I2) @ torch.linalg.inv(s)
    shift = m - gain @ (t0 * m)
    z0, xi = torch.randn(2, *x1.shape, generator=gen(7), dtype=F64)  # an independent batch
    xt = t0 * x1 + (1 - t0) * z0 + sigma * xi
    tol_a, tol_b = fit_tolerance(xt, x1 - z0, gain, shift)
    assert (-model.prec() - gain).norm() < tol_a < 0.05 * gain.norm()
    assert (model.h.detach() - shift).norm() < tol_b < 0.05 * shift.norm()
