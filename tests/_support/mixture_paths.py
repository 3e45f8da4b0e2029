r"""Closed forms of probability paths from a standard normal source to a Gaussian mixture.

Data $x_1 \sim \sum_k w_k\,\mathcal N(m_k, S_k)$, noise $x_0 \sim \mathcal N(0, I)$ and
$x_t = \alpha(t)\,x_1 + \sigma(t)\,x_0$ (t = 0 noise, t = 1 data). Given component $k$,
$(x_1, x_t)$ is jointly Gaussian, so with $C_k = \alpha^2 S_k + \sigma^2 I$ and
$r = x - \alpha m_k$:

* $\mathbb E[x_1 \mid x_t = x, k] = m_k + \alpha S_k C_k^{-1} r$,
* $\mathbb E[x_0 \mid x_t = x, k] = \sigma C_k^{-1} r$,
* the marginal is $\sum_k w_k \mathcal N(\alpha m_k, C_k)$ and its score is
  $-\sum_k \pi_k(x) C_k^{-1} r$ with posterior weights $\pi_k \propto w_k\mathcal N(x; \alpha m_k, C_k)$,
* the marginal velocity is $\sum_k \pi_k(x)\,(\dot\alpha\,\mathbb E[x_1 \mid x, k] +
  \dot\sigma\,\mathbb E[x_0 \mid x, k])$.

The schedules $(\alpha, \dot\alpha, \sigma, \dot\sigma)$ are written here from the documented
formulas of each path, independently of the library. Everything is float64 and uses only
torch (usable from every piece's tests).
"""

from __future__ import annotations

import math

import torch
from torch import nn

F64 = torch.float64
VP_BETA = (0.1, 20.0)  # VariancePreservingInterpolant defaults (sigma_min, sigma_max)
VE_SIGMA = (0.002, 80.0)  # VarianceExplodingInterpolant defaults (sigma_min, sigma_max)
EDM_RHO = 7.0


def schedules(path: str, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(alpha, d_alpha, sigma, d_sigma)`` of ``path`` at float64 times ``t`` (any shape)."""
    t = t.to(F64)
    one, zero = torch.ones_like(t), torch.zeros_like(t)
    if path == "linear":
        return t, one, 1 - t, -one
    if path == "cosine":
        h = 0.5 * math.pi
        return torch.sin(h * t), h * torch.cos(h * t), torch.cos(h * t), -h * torch.sin(h * t)
    if path == "vp":  # L = -(1-t)^2 (b1 - b0)/4 - (1-t) b0/2, alpha = e^L, sigma^2 = 1 - e^{2L}
        b0, b1 = VP_BETA
        u = 1 - t
        log_a = -0.25 * u**2 * (b1 - b0) - 0.5 * u * b0
        d_log_a = 0.5 * (b0 + u * (b1 - b0))  # beta_t / 2
        a = torch.exp(log_a)
        s = torch.sqrt(1 - a**2)
        return a, a * d_log_a, s, -(a**2) * d_log_a / s
    lo, hi = VE_SIGMA
    if path == "ve":  # sigma = hi^{1-t} lo^t
        s = hi ** (1 - t) * lo**t
        return one, zero, s, s * math.log(lo / hi)
    if path == "edm":  # sigma = (hi^{1/rho} + t (lo^{1/rho} - hi^{1/rho}))^rho
        r = EDM_RHO
        base = hi ** (1 / r) + t * (lo ** (1 / r) - hi ** (1 / r))
        return one, zero, base**r, r * base ** (r - 1) * (lo ** (1 / r) - hi ** (1 / r))
    raise ValueError(f"unknown path {path!r}")


class Mixture:
    """A Gaussian mixture: weights ``(K,)``, means ``(K, D)``, covariances ``(K, D, D)``."""

    def __init__(self, weights, means, covs):
        self.w = torch.as_tensor(weights, dtype=F64)
        self.m = torch.as_tensor(means, dtype=F64)
        self.S = torch.as_tensor(covs, dtype=F64)
        self.dim = self.m.shape[1]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        k = torch.multinomial(self.w, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, dtype=F64, generator=generator)
        return self.m[k] + (torch.linalg.cholesky(self.S)[k] @ z[:, :, None])[..., 0]

    def mean(self) -> torch.Tensor:
        return (self.w[:, None] * self.m).sum(0)

    def cov(self) -> torch.Tensor:
        mu = self.mean()
        d = self.m - mu
        return (self.w[:, None, None] * (self.S + d[:, :, None] * d[:, None, :])).sum(0)

    # ------------------------------------------------------------------ the path at time t
    def _parts(self, x: torch.Tensor, a, s):
        """``(log posterior weights (B, K), C^{-1} r (B, K, D), r (B, K, D), log p (B,))``."""
        eye = torch.eye(self.dim, dtype=F64)
        a2, s2 = (a**2)[:, None, None, None], (s**2)[:, None, None, None]
        cov = a2 * self.S[None] + s2 * eye  # (B, K, D, D)
        r = x[:, None, :] - a[:, None, None] * self.m[None]  # (B, K, D)
        chol = torch.linalg.cholesky(cov)
        sol = torch.cholesky_solve(r[..., None], chol)[..., 0]
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        logn = -0.5 * ((r * sol).sum(-1) + logdet + self.dim * math.log(2 * math.pi))
        joint = torch.log(self.w)[None] + logn
        log_p = torch.logsumexp(joint, dim=1)
        return joint - log_p[:, None], sol, r, log_p

    def at(self, path: str, x: torch.Tensor, t) -> dict[str, torch.Tensor]:
        """Closed forms at ``x`` ``(B, D)`` and times ``t`` (number, 0-d or ``(B,)``):
        ``velocity``, ``score``, ``x0_hat`` (E[x0|x]), ``x1_hat`` (E[x1|x]), ``log_p``."""
        x = x.to(F64)
        t = torch.as_tensor(t, dtype=F64).expand(x.shape[0])
        a, da, s, ds = schedules(path, t)
        log_pi, sol, _, log_p = self._parts(x, a, s)
        pi = log_pi.exp()[..., None]  # (B, K, 1)
        x1_k = self.m[None] + a[:, None, None] * (self.S[None] @ sol[..., None])[..., 0]
        x0_k = s[:, None, None] * sol
        v_k = da[:, None, None] * x1_k + ds[:, None, None] * x0_k
        return {
            "velocity": (pi * v_k).sum(1),
            "score": -(pi * sol).sum(1),
            "x0_hat": (pi * x0_k).sum(1),
            "x1_hat": (pi * x1_k).sum(1),
            "log_p": log_p,
            "posterior": log_pi.exp(),
        }

    # ------------------------------------------------------------------ 1-D transport
    def cdf(self, path: str, x: torch.Tensor, t: float) -> torch.Tensor:
        """CDF of the 1-D marginal at time ``t``, elementwise on ``x`` (float64)."""
        a, _, s, _ = schedules(path, torch.tensor(t, dtype=F64))
        sd = (a**2 * self.S[:, 0, 0] + s**2).sqrt()
        u = (x.to(F64)[..., None] - a * self.m[:, 0]) / sd
        return (self.w * torch.special.ndtr(u)).sum(-1)

    def transport(self, path: str, x0: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
        r"""The exact probability-flow map of a 1-D path from ``t0`` to ``t1``.

        In 1-D the flow map is increasing and carries $p_{t_0}$ to $p_{t_1}$, so it is the
        monotone rearrangement $F_{t_1}^{-1} \circ F_{t_0}$ (quantiles by bisection on
        [-200, 200], to float64 resolution).
        """
        u = self.cdf(path, x0, t0)
        lo, hi = torch.full_like(u, -200.0), torch.full_like(u, 200.0)
        for _ in range(80):  # 400 / 2^80: far below float64 spacing
            mid = 0.5 * (lo + hi)
            below = self.cdf(path, mid, t1) < u
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return 0.5 * (lo + hi)


class MixtureField(nn.Module):
    """``field(x, t)``: the exact velocity (or score, noise) of ``mixture`` on ``path``.

    ``scale`` multiplies the output (1.0 exact; 1.05 is the 5% perturbation the tests'
    sensitivity is checked with).
    """

    def __init__(self, mixture: Mixture, path: str, what: str = "velocity", scale: float = 1.0):
        super().__init__()
        self.mixture, self.path, self.what, self.scale = mixture, path, what, scale

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        key = {"velocity": "velocity", "score": "score", "noise": "x0_hat"}[self.what]
        flat = x.reshape(x.shape[0], -1)
        out = self.mixture.at(self.path, flat, t)[key] * self.scale
        return out.reshape(x.shape).to(x.dtype)


def mixture_1d() -> Mixture:
    """Three components of different weights and widths, asymmetric about 0."""
    return Mixture([0.2, 0.5, 0.3], [[-2.0], [0.5], [2.5]], [[[0.09]], [[0.36]], [[0.16]]])


def mixture_2d() -> Mixture:
    """Two correlated components of different weights and widths."""
    return Mixture(
        [0.3, 0.7],
        [[-1.5, 1.0], [1.5, -0.5]],
        [[[0.3, 0.1], [0.1, 0.2]], [[0.5, -0.2], [-0.2, 0.4]]],
    )
