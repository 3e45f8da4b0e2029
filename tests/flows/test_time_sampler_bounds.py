r"""TimeSampler's ``"lognormal"`` times at their clamps, against the normal CDF.

$t = \sigma(-(\mu + s z))$, $z \sim N(0, 1)$, clamped to $[\max(10^{-4}, \epsilon),
1 - \epsilon]$: the clamped draws equal the bound exactly and their fraction is
$P(t > 1 - \epsilon) = \Phi((-\mu - \operatorname{logit}(1 - \epsilon)) / s)$ (upper),
$P(t < a) = 1 - \Phi((-\mu - \operatorname{logit} a) / s)$ (lower, $a$ the lower bound)."""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.flows import TimeSampler

N = 40_000


def _phi(z):
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _logit(p):
    return math.log(p / (1.0 - p))


# (t_p_mean, eps): many draws above 1 - eps; many below eps; many below the 1e-4 floor
@pytest.mark.parametrize(("mu", "eps"), [(-3.0, 0.05), (3.0, 0.05), (8.0, 0.0)])
def test_lognormal_times_are_clamped_to_the_documented_bounds(mu, eps):
    s = 1.2
    t = TimeSampler("lognormal", t_p_mean=mu, t_p_std=s)(
        N, eps, device="cpu", dtype=torch.float64, generator=torch.Generator().manual_seed(40)
    )
    lo, hi = max(1.0e-4, eps), 1.0 - eps
    assert float(t.min()) >= lo and float(t.max()) <= hi
    p_hi = _phi((-mu - _logit(hi)) / s) if eps else 0.0  # sigmoid < 1: no draw at 1
    p_lo = 1.0 - _phi((-mu - _logit(lo)) / s)
    for bound, p in ((hi, p_hi), (lo, p_lo)):
        frac = float((t == bound).double().mean())  # the clamped draws sit on the bound
        tol = 4 * math.sqrt(max(p * (1 - p), 1e-12) / N) + 1e-12
        assert abs(frac - p) < tol, (bound, frac, p, tol)
    assert max(p_hi, p_lo) > 0.1  # each case exercises one clamp
