"""Labels made under ``torch.inference_mode()`` (an inference tensor ``y``) conditioning a
model that reads them through ``nn.Embedding``: autograd saves the labels when the loss
differentiates the energy in ``x``, so the loss passes them on as normal tensors."""

from __future__ import annotations

import pytest
import torch
from _support.losses import LabelledQuadratic, TinyLangevin

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


def test_conditional_cd_on_data_made_under_inference_mode():
    """Data from a pipeline run under ``inference_mode`` with labels: the one-time check that
    the model reads ``y`` runs the model on the first row, which autograd saves when the
    model's first layer is linear; that row is passed on as a normal tensor, so the loss and
    its gradients are those of the same data made outside inference mode."""
    from torchebm.losses import ContrastiveDivergence

    class Linear(torch.nn.Module):  # E = |W x - mu_y|^2 / 2: W saves x for backward
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 2, bias=False, dtype=F64)
            self.mu = torch.nn.Embedding(3, 2, dtype=F64)

        def forward(self, x, y):
            return 0.5 * (self.w(x) - self.mu(y)).square().sum(-1)

    x = torch.randn(12, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(12) % 3
    with torch.inference_mode():
        x_inf = x.clone()
    results = []
    for data in (x, x_inf):
        torch.manual_seed(0)
        model = Linear()
        loss_fn = ContrastiveDivergence(model, TinyLangevin(model, step_size=0.01), k_steps=3)
        loss, _ = loss_fn(data, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(2))
        loss.backward()
        results.append((loss.detach(), model.w.weight.grad, model.mu.weight.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
