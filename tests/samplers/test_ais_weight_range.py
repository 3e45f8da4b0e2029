"""AIS log-weights spread over far more than float64's exp range (about 709).

One temperature is plain importance sampling from the base $\\mathcal N(0, 1)$ to
$e^{-x^2 / (2 s^2)}$, $Z = \\sqrt{2\\pi}\\,s$: with $s = 10^{-3}$ the log-weights
$-x^2 (1/s^2 - 1)/2$ run from about 0 down to $-10^6$. The estimate must still be the
log-mean-exp of the weights (pivoted at their maximum): finite, within 5 of its own
reported standard errors of $\\log Z$. The estimator's relative variance is
$1/(\\sqrt 2 s) \\approx 707$, so 20000 chains give a standard error of about 0.2.
"""

from __future__ import annotations

import math

import torch

from torchebm.core import GaussianModel
from torchebm.samplers import AnnealedImportanceSampling

F64 = torch.float64


def test_log_z_is_finite_when_log_weights_span_a_million():
    s, n = 1e-3, 20000
    model = GaussianModel(torch.zeros(1, dtype=F64), torch.full((1, 1), s * s, dtype=F64))
    ais = AnnealedImportanceSampling(model, n_intermediate=1, transition="mala", step_size=0.1)
    r = ais.estimate(n, 1, dtype=F64, generator=torch.Generator().manual_seed(31))
    assert float(r.log_weights.max() - r.log_weights.min()) > 1e4  # far beyond exp's range
    exact = math.log(math.sqrt(2 * math.pi) * s)
    assert math.isfinite(r.log_z) and math.isfinite(r.standard_error)
    assert abs(r.log_z - exact) < 5 * r.standard_error, (r.log_z, exact, r.standard_error)
