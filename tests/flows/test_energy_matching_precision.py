"""EnergyMatchingLoss's contrastive value with large or low-precision energies, against a
hand-written float64 reduction of the same energies."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from torchebm.flows import EnergyMatchingLoss

F64 = torch.float64


class OffsetQuadratic(nn.Module):
    r"""$V(x) = c + \tfrac12\|L(x - m)\|^2$ through ``nn.Linear`` (autocast runs it in bfloat16)."""

    def __init__(self, dim: int, offset: float):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.lin = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.eye(dim) + 0.2 * torch.randn(dim, dim, generator=g))
        self.m = nn.Parameter(0.5 * torch.randn(dim, generator=g))
        self.c = nn.Parameter(torch.tensor(offset))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c + 0.5 * self.lin(x - self.m).square().sum(-1)


@pytest.mark.parametrize(
    ("offset", "autocast"),
    [
        (4e6, False),  # float32 energies: the rounded means were 10-30% off (ulp 0.25-0.5)
        (100.0, True),  # bfloat16 energies: each mean rounded to 8 bits, 35% off
    ],
)
def test_contrastive_value_is_the_float64_difference_of_the_energies(offset, autocast):
    b, trim = 256, 0.1
    model = OffsetQuadratic(3, offset)
    em = EnergyMatchingLoss(
        model, coupling="independent", lambda_cd=1.0, n_langevin_steps=10, cd_clamp=None
    )
    x1 = torch.randn(b, 3, generator=torch.Generator().manual_seed(100))
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with ctx:
        terms = em.training_losses(x1, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():  # the same energies as the loss's (deterministic model)
            e_pos, e_neg = model(x1), model(terms["negatives"])
    assert e_pos.dtype == (torch.bfloat16 if autocast else torch.float32)
    # float64 by hand: mean of the data energies minus the mean of the lowest (1 - trim) B
    kept = sorted(float(v) for v in e_neg)[: b - int(trim * b)]
    expected = sum(float(v) for v in e_pos) / b - sum(kept) / len(kept)
    assert abs(expected) > 0.3  # a difference of order 1 between energies near `offset`
    # reduced in float32 about an exact anchor: a few float32 roundings of |e - anchor| (<~ 50)
    tol = 64 * torch.finfo(torch.float32).eps * 50
    assert abs(terms["cd_value"].item() - expected) < tol
    assert abs(terms["cd_loss"].item() - expected) < tol
    assert terms["cd_value"].dtype == torch.float32 == terms["loss"].dtype
