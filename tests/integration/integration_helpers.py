"""Small models and lists shared by the integration tests (checkpoints, reproducibility,
validation, DDP-wrapped models)."""

from __future__ import annotations

import torch
from torch import nn

import torchebm.datasets as DS
from torchebm.core import BaseModel, GaussianModel

__all__ = [
    "D2",
    "DATASETS",
    "CountingQuadratic",
    "Field",
    "P_QUADRATIC",
    "Potential",
    "gauss",
    "gen",
]

D2 = 2

#: every synthetic 2-D dataset class
DATASETS = [
    DS.GaussianMixtureDataset,
    DS.EightGaussiansDataset,
    DS.TwoMoonsDataset,
    DS.SwissRollDataset,
    DS.CircleDataset,
    DS.CheckerboardDataset,
    DS.PinwheelDataset,
    DS.TwoSpiralsDataset,
]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Potential(nn.Module):
    """A small nonlinear energy ``(B, 2) -> (B,)``: tanh features plus a quadratic well."""

    def __init__(self, seed: int = 123):
        super().__init__()
        g = gen(seed)
        self.w = nn.Parameter(torch.randn(D2, 8, generator=g) * 0.5)
        self.v = nn.Parameter(torch.randn(8, generator=g) * 0.5)

    def forward(self, x, **kw):
        return torch.tanh(x @ self.w) @ self.v + 0.5 * (x**2).sum(-1)


class Field(nn.Module):
    """A linear time-dependent velocity field ``(x (B, 2), t (B,)) -> (B, 2)``."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([[0.5, 0.1], [-0.2, 0.4]]))

    def forward(self, x, t, **kw):
        return x @ self.a + t.reshape(-1, 1)


def gauss() -> GaussianModel:
    """Standard normal in 2-D."""
    return GaussianModel(torch.zeros(D2), torch.eye(D2))


#: precision of `CountingQuadratic`
P_QUADRATIC = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)


class CountingQuadratic(BaseModel):
    """E = x^T P x / 2 + 0 * w (a parameter, so DDP accepts it); counts `gradient` calls."""

    def __init__(self):
        super().__init__(dtype=torch.float64)
        self.w = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.calls = 0

    def forward(self, x):
        return 0.5 * ((x @ P_QUADRATIC) * x).sum(-1) + 0.0 * self.w

    def gradient(self, x, model_kwargs=None):
        self.calls += 1
        return x @ P_QUADRATIC
