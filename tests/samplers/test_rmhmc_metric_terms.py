"""RMHMC's Hamiltonian terms of the metric, where they are large.

$H(x, p) = E(x) + \\tfrac12 p^\\top G^{-1} p + \\tfrac12 \\log|G|$. With a constant metric the
generalised leapfrog is the leapfrog with mass $G$, so from stationarity the acceptance rate
is $\\mathbb E[\\min(1, e^{H - H'})]$ of that leapfrog: a float64 Monte Carlo of $10^6$ hand-
written leapfrog trajectories is the reference. The metric here is $100\\,\\mathrm{diag}(m)$
and the step $10\\times$ that of the unit-scale problem (the same dynamics): then
$\\tfrac12\\log|G| \\approx 6.9$ and a 5% error in the metric terms of either end's $H$
moves the rate by about 0.12, four times the tolerance (4 binomial standard errors of 4000
chains plus 4 of the reference), where with $G = \\mathrm{diag}(m)$ it moves it by 0.03.
"""

from __future__ import annotations

import math

import torch
from _support.leapfrog_reference import leapfrog_acceptance

from torchebm.core import GaussianModel
from torchebm.samplers import RiemannianManifoldHMC

F64 = torch.float64
SD = [1.0, 0.5, 2.0]  # target N(0, diag(SD^2))
G_DIAG = [150.0, 400.0, 50.0]  # 100 x (1.5, 4, 0.5)
H, N_LEAPFROG, B = 15.0, 3, 4000


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_acceptance_rate_with_a_heavy_constant_metric_is_the_leapfrog_expectation():
    p_ref, ref_se = leapfrog_acceptance(SD, G_DIAG, H, N_LEAPFROG, seed=2024)
    assert 0.6 < p_ref < 0.8  # where a shift of 0.12 is far outside the tolerance
    model = GaussianModel(torch.zeros(3, dtype=F64), torch.diag(torch.tensor(SD, dtype=F64) ** 2))
    metric = torch.diag(torch.tensor(G_DIAG, dtype=F64))
    rm = RiemannianManifoldHMC(
        model,
        lambda x: metric.expand(x.shape[0], 3, 3),
        step_size=H,
        n_leapfrog_steps=N_LEAPFROG,
        dtype=F64,
    )
    x0 = torch.randn(B, 3, generator=_gen(7), dtype=F64) * torch.tensor(SD, dtype=F64)
    _, diag = rm.sample(x=x0, n_steps=1, return_diagnostics=True, generator=_gen(8))
    rate = float(diag["acceptance_rate"].mean())
    tol = 4 * math.sqrt(p_ref * (1 - p_ref) / B) + 4 * ref_se
    assert abs(rate - p_ref) < tol, f"acceptance {rate:.4f}, expected {p_ref:.4f} +- {tol:.4f}"
