"""The acceptance rate of HMC's leapfrog on a diagonal Gaussian, by float64 Monte Carlo."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["leapfrog_acceptance"]


def leapfrog_acceptance(
    sd: Sequence[float],
    mass: Sequence[float],
    h: float,
    n_leapfrog: int,
    seed: int,
    n: int = 1_000_000,
) -> tuple[float, float]:
    r"""$\mathbb E[\min(1, e^{H(x,p) - H(x',p')})]$ at stationarity: ``(mean, standard error)``.

    $x \sim \mathcal N(0, \mathrm{diag}(sd^2))$, $p \sim \mathcal N(0, \mathrm{diag}(m))$,
    then ``n_leapfrog`` kick-drift-kick steps of size ``h`` with the diagonal mass $m$, all
    in float64 (a constant Riemannian metric $G = \mathrm{diag}(m)$ gives the same rate: its
    $\tfrac12 \log|G|$ is the same at both ends and cancels).

    Args:
        sd: Standard deviations of the target, one per dimension.
        mass: Diagonal mass, one per dimension.
        h: Step size.
        n_leapfrog: Leapfrog steps per trajectory.
        seed: Seed of the draws.
        n: Number of trajectories.
    """
    g = torch.Generator().manual_seed(seed)
    s2, m = torch.tensor(sd, dtype=torch.float64) ** 2, torch.tensor(mass, dtype=torch.float64)
    x = torch.randn(n, len(sd), generator=g, dtype=torch.float64) * s2.sqrt()
    p = torch.randn(n, len(sd), generator=g, dtype=torch.float64) * m.sqrt()

    def ham(x, p):
        return (0.5 * x**2 / s2 + 0.5 * p**2 / m).sum(1)

    h0 = ham(x, p)
    for _ in range(n_leapfrog):
        p = p - 0.5 * h * x / s2
        x = x + h * p / m
        p = p - 0.5 * h * x / s2
    a = torch.exp(h0 - ham(x, p)).clamp(max=1.0)
    return float(a.mean()), float(a.std() / math.sqrt(n))
