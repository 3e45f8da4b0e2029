"""An energy whose values sit near 1000: what half precision rounds (shared by the tests of
Metropolis tests, swap tests, importance weights and metrics under an ambient autocast)."""

from __future__ import annotations

import torch
from torch import nn

from torchebm.core import BaseModel

__all__ = ["OffsetQuadratic"]


class OffsetQuadratic(BaseModel):
    """$E(x) = 1000 + |x|^2 / 2$ through an ``nn.Linear`` read-out (bfloat16 under autocast,
    where 1000 + e is rounded to a multiple of 4): the law is N(0, I) and
    $\\log Z = (d/2) \\log(2\\pi) - 1000$."""

    def __init__(self):
        super().__init__()
        self.read = nn.Linear(1, 1)
        with torch.no_grad():
            self.read.weight.fill_(1.0)
            self.read.bias.fill_(1000.0)

    def forward(self, x):
        return self.read(0.5 * x.square().flatten(1).sum(-1, keepdim=True))[:, 0]
