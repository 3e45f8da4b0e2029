"""Labels made under ``torch.inference_mode()`` (an inference tensor ``y``) conditioning a
model that reads them through ``nn.Embedding``: autograd saves the labels when the loss
differentiates the energy in ``x``, so the loss passes them on as normal tensors."""

from __future__ import annotations

import pytest
import torch
from _support.losses import LabelledQuadratic

from torchebm.losses import ScoreMatching

F64 = torch.float64


@pytest.mark.parametrize("inside", [False, True], ids=["labels-only", "whole-call"])
def test_score_matching_with_inference_labels_matches_closed_form(inside):
    torch.manual_seed(0)
    model = LabelledQuadratic()
    x = torch.randn(12, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        y = torch.arange(12) % 3
    # grad E = x - mu_y, Hessian I: 1/2 |grad E|^2 - tr(Hessian) = 1/2 |x - mu_y|^2 - 2
    mu = model.mu.weight.detach()
    ref = (0.5 * (x - mu[torch.arange(12) % 3]).square().sum(1)).mean() - 2.0
    loss_fn = ScoreMatching(model, hessian_method="exact", dtype=F64)
    if inside:
        with torch.inference_mode():
            value = loss_fn(x, model_kwargs={"y": y})
        assert not value.requires_grad
    else:  # training on labels a data pipeline made under inference_mode
        value = loss_fn(x, model_kwargs={"y": y})
        value.backward()
        assert model.mu.weight.grad is not None
    torch.testing.assert_close(value.detach(), ref, rtol=1e-12, atol=1e-12)
