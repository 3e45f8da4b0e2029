"""The two kinds of model the library calls: an energy ``model(x)`` and a field
``model(x, t)`` (the miscomposition tests give each where the other belongs)."""

from __future__ import annotations

from torch import nn

__all__ = ["Energy", "Velocity"]


class Energy(nn.Module):
    """An unconditional energy ``forward(x) -> (B,)`` on 2-D inputs."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        return self.lin(x).squeeze(-1)


class Velocity(nn.Module):
    """An unconditional field ``forward(x, t)`` on 2-D inputs, shaped like ``x``."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x, t):
        return self.lin(x) * (1.0 + t[:, None])
