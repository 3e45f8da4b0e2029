"""A score-matching loss evaluated under ``torch.no_grad()`` or ``torch.inference_mode()``
(a validation loss) differentiates the energy in ``x`` all the same: the same value as in
grad mode, here against the closed form, and no autograd history."""

from __future__ import annotations

import pytest
import torch
from _support.losses import DiagonalQuadratic

from torchebm.losses import ScoreMatching

W = (1.0, 2.0)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("method", ["exact", "hutchinson", "approx"])
def test_score_matching_value_under_no_grad_contexts(context, method):
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w = torch.tensor(W, dtype=torch.float64)
    # E = 1/2 sum w x^2: grad = w x, Hessian diag(w); Rademacher probes give v'Hv = sum w
    # exactly, so every method equals mean(1/2 |w x|^2) - sum w
    ref = (0.5 * (w * x).square().sum(1)).mean() - w.sum()
    loss_fn = ScoreMatching(DiagonalQuadratic(W), hessian_method=method, dtype=torch.float64)
    with context():
        value = loss_fn(x, generator=torch.Generator().manual_seed(1))
    assert value.grad_fn is None and not value.requires_grad
    torch.testing.assert_close(value, ref, rtol=1e-9, atol=1e-9)
