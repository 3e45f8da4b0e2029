"""AIS with several transitions per temperature (``n_transition_steps > 1``).

When the target is the base $\\mathcal N(0, s^2 I)$ every intermediate law is the base, the
chains are stationary and each of the ``n_transition_steps`` MALA proposals per temperature
is accepted with probability $\\mathbb E[\\min(1, a)]$ of one proposal from stationarity: a
float64 Monte Carlo of $10^6$ hand-written MALA proposals is the reference. The reported
``acceptance_rate`` is that per-proposal rate (tolerance: 4 binomial standard errors of the
chains plus 4 of the reference); every weight is 1, so ``log_z`` is $\\log Z_0$ exactly.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.core import GaussianModel
from torchebm.samplers import AnnealedImportanceSampling

F64 = torch.float64
S, D, EPS, B = 0.7, 2, 0.4, 4000


def _mala_acceptance(n: int = 1_000_000) -> tuple[float, float]:
    """``(mean, standard error)`` of min(1, a) for y = x - eps x / s^2 + sqrt(2 eps) xi."""
    g = torch.Generator().manual_seed(777)
    x = S * torch.randn(n, D, generator=g, dtype=F64)
    y = x - EPS * x / S**2 + math.sqrt(2 * EPS) * torch.randn(n, D, generator=g, dtype=F64)

    def log_q(to, frm):
        return -((to - frm + EPS * frm / S**2) ** 2).sum(1) / (4 * EPS)

    log_a = 0.5 * ((x**2 - y**2) / S**2).sum(1) + log_q(x, y) - log_q(y, x)
    a = torch.exp(log_a).clamp(max=1.0)
    return float(a.mean()), float(a.std() / math.sqrt(n))


@pytest.mark.parametrize("n_transition_steps", [1, 3])
def test_mala_acceptance_rate_is_per_proposal(n_transition_steps):
    p_ref, ref_se = _mala_acceptance()
    assert 0.4 < p_ref < 0.9
    model = GaussianModel(torch.zeros(D, dtype=F64), S**2 * torch.eye(D, dtype=F64), dtype=F64)
    ais = AnnealedImportanceSampling(
        model,
        n_intermediate=4,
        transition="mala",
        step_size=EPS,
        n_transition_steps=n_transition_steps,
        base_std=S,
    )
    r = ais.estimate(B, D, dtype=F64, generator=torch.Generator().manual_seed(9))
    tol = 4 * math.sqrt(p_ref * (1 - p_ref) / B) + 4 * ref_se
    assert r.acceptance_rate is not None
    assert abs(r.acceptance_rate - p_ref) < tol, (r.acceptance_rate, p_ref, tol)
    assert r.log_z == pytest.approx(0.5 * D * math.log(2 * math.pi * S * S), abs=1e-9)
