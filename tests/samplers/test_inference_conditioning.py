"""Sampling with labels made under ``torch.inference_mode()`` (an inference tensor ``y``)
for a model that reads them through ``nn.Embedding``: the energy gradient's autograd saves
the labels, so ``sample()`` passes them on as normal tensors."""

from __future__ import annotations

import pytest
import torch
from _support.losses import LabelledQuadratic
from torch import nn

from torchebm.samplers import GradientDescentSampler

F64 = torch.float64


class PlainLabelledQuadratic(nn.Module):
    """The same energy as a plain module (the sampler's own autograd path)."""

    def __init__(self) -> None:
        super().__init__()
        self.mu = nn.Embedding(3, 2, dtype=F64)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x - self.mu(y)).square().sum(-1)


@pytest.mark.parametrize("model_cls", [LabelledQuadratic, PlainLabelledQuadratic])
@pytest.mark.parametrize("inside", [False, True], ids=["labels-only", "whole-call"])
def test_gradient_descent_with_inference_labels_matches_closed_form(model_cls, inside):
    torch.manual_seed(0)
    model = model_cls()
    x0 = torch.randn(9, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        y = torch.arange(9) % 3
    eta, k = 0.1, 6
    sampler = GradientDescentSampler(model, step_size=eta, dtype=F64)
    if inside:
        with torch.inference_mode():
            out = sampler.sample(x=x0, n_steps=k, model_kwargs={"y": y})
    else:
        out = sampler.sample(x=x0, n_steps=k, model_kwargs={"y": y})
    # x_k = mu_y + (1 - eta)^k (x0 - mu_y)
    mu = model.mu.weight.detach()[torch.arange(9) % 3]
    torch.testing.assert_close(out, mu + (1 - eta) ** k * (x0 - mu), rtol=1e-12, atol=1e-12)
