"""Shared checks of the flow objectives (tests/flows and tests/losses): a small field and the
scalar-loss check of ``training_losses``."""

from __future__ import annotations

import torch
from torch import nn


class LinearField(nn.Module):
    """A small time-conditioned field ``f(x, t) = W [x, t] + b`` in float64."""

    def __init__(self, dim: int):
        super().__init__()
        self.lin = nn.Linear(dim + 1, dim, dtype=torch.float64)

    def forward(self, x, t):
        return self.lin(torch.cat([x, t.reshape(-1, 1).to(x.dtype)], dim=1))


def check_batch_loss(loss_fn, weighted: bool) -> None:
    """The scalar loss (one reduction of the per-element loss when it can) equals the mean
    of the per-sample losses of ``training_losses``, or their ``loss_weight_fn``-weighted
    mean, for the same random draws."""
    x1 = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    terms = loss_fn.training_losses(x1, generator=torch.Generator().manual_seed(1))
    elementwise = terms["elementwise"]
    if not weighted:
        assert elementwise.shape == (64, 3)
        torch.testing.assert_close(terms["loss"], elementwise.mean(1), rtol=0, atol=0)
    else:
        assert elementwise is None  # the per-sample weights are not per element
    loss = loss_fn(x1, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss, terms["loss"].mean(), rtol=1e-12, atol=0)
