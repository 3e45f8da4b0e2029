"""The coupling-weighted batch mean of the flow objectives in float16, against a float64
reduction by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.flows import EquilibriumMatchingLoss

F16 = torch.float16


class ZeroField(nn.Module):
    """f(x) = 0 x (a float16 parameter): the EqM loss of a sample is |c(t) u_t|^2 / D."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros((), dtype=F16))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.w * x


def test_float16_weighted_batch_mean_does_not_overflow():
    """Per-sample losses near 200 over 512 samples: the weighted sum (~1e5) is beyond
    float16's 65504, the mean is not (it was inf)."""
    eqm = EquilibriumMatchingLoss(ZeroField(), coupling="unbalanced_sinkhorn", nan_policy="ignore")
    x = 4.0 * torch.randn(512, 4, generator=torch.Generator().manual_seed(1))
    x0 = torch.randn(512, 4, generator=torch.Generator().manual_seed(2))
    loss = eqm(x, x0=x0, generator=torch.Generator().manual_seed(0))
    terms = eqm.training_losses(
        x.to(F16), x0=x0.to(F16), generator=torch.Generator().manual_seed(0)
    )
    w = terms["weights"]
    assert w is not None and w.dtype == F16
    per, w = terms["loss"].double().tolist(), w.double().tolist()
    expected = sum(a * b for a, b in zip(per, w)) / sum(w)
    assert sum(a * b for a, b in zip(per, w)) > 65504 and 100 < expected < 1000
    assert loss.dtype == F16
    # float16 result of float32 sums: one rounding of the mean, relative 2^-11
    assert loss.item() == pytest.approx(expected, rel=2 * torch.finfo(F16).eps)
