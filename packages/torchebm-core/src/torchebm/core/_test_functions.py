r"""Classic optimisation test functions as energies, with closed-form gradients.

Booth, Himmelblau (both two-dimensional) and Styblinski-Tang (any dimension), the three
benchmark landscapes of torchebm 0.8.x that the other analytic models did not cover.
"""

from __future__ import annotations

from typing import Any

import torch

from torchebm.core._base_model import _AnalyticModel, _sum_event
from torchebm.core.errors import ShapeError

__all__ = ["BoothModel", "HimmelblauModel", "StyblinskiTangModel"]


def _two_d(name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape[-1] != 2:
        raise ShapeError(f"{name} is two-dimensional: x must have last dim 2, got {tuple(x.shape)}")
    return x[..., 0], x[..., 1]


class BoothModel(_AnalyticModel):
    r"""Booth energy $E(x) = (x_1 + 2x_2 - 7)^2 + (2x_1 + x_2 - 5)^2$ on $\mathbb{R}^2$.

    A convex quadratic with its single minimum $E = 0$ at $(1, 3)$.

    Args:
        dtype: Dtype the model reports (inputs keep their own). Default ``float32``.
        device: Device of the model.

    Shape:
        x: `(B, 2)` or `(2,)`; returns `(B,)` (`(1,)` for a single point).

    Example:
        >>> BoothModel()(torch.tensor([[1.0, 3.0]]))
        tensor([0.])

    References:
        Jamil & Yang, "A literature survey of benchmark functions for global
        optimisation problems", 2013.
    """

    def __init__(self, dtype: torch.dtype = torch.float32, device: Any = None):
        super().__init__(dtype=dtype, device=device)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = _two_d("BoothModel", x)
        return _sum_event(((x1 + 2 * x2 - 7) ** 2 + (2 * x1 + x2 - 5) ** 2).unsqueeze(-1))

    def _grad(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = _two_d("BoothModel", x)
        a, b = x1 + 2 * x2 - 7, 2 * x1 + x2 - 5
        return torch.stack((2 * a + 4 * b, 4 * a + 2 * b), dim=-1)


class HimmelblauModel(_AnalyticModel):
    r"""Himmelblau energy $E(x) = (x_1^2 + x_2 - 11)^2 + (x_1 + x_2^2 - 7)^2$ on $\mathbb{R}^2$.

    Four minima with $E = 0$, among them $(3, 2)$: a small multimodal benchmark.

    Args:
        dtype: Dtype the model reports (inputs keep their own). Default ``float32``.
        device: Device of the model.

    Shape:
        x: `(B, 2)` or `(2,)`; returns `(B,)`.

    Example:
        >>> HimmelblauModel()(torch.tensor([[3.0, 2.0]]))
        tensor([0.])

    References:
        Himmelblau, "Applied Nonlinear Programming", 1972.
    """

    def __init__(self, dtype: torch.dtype = torch.float32, device: Any = None):
        super().__init__(dtype=dtype, device=device)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = _two_d("HimmelblauModel", x)
        return _sum_event(((x1**2 + x2 - 11) ** 2 + (x1 + x2**2 - 7) ** 2).unsqueeze(-1))

    def _grad(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = _two_d("HimmelblauModel", x)
        a, b = x1**2 + x2 - 11, x1 + x2**2 - 7
        return torch.stack((4 * x1 * a + 2 * b, 2 * a + 4 * x2 * b), dim=-1)


class StyblinskiTangModel(_AnalyticModel):
    r"""Styblinski-Tang energy $E(x) = \tfrac12 \sum_i (x_i^4 - 16 x_i^2 + 5 x_i)$.

    Separable; each coordinate has its global minimum at $x_i \approx -2.903534$
    ($E \approx -39.16617\,d$).

    Args:
        dtype: Dtype the model reports (inputs keep their own). Default ``float32``.
        device: Device of the model.

    Shape:
        x: `(B, ..., d)` or `(d,)`; returns `(B,)`.

    Example:
        >>> StyblinskiTangModel()(torch.zeros(1, 3))
        tensor([0.])

    References:
        Styblinski & Tang, "Experiments in nonconvex optimization: stochastic
        approximation with function smoothing and simulated annealing", 1990.
    """

    def __init__(self, dtype: torch.dtype = torch.float32, device: Any = None):
        super().__init__(dtype=dtype, device=device)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return _sum_event(0.5 * (x**4 - 16 * x**2 + 5 * x))

    def _grad(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x**3 - 16 * x + 2.5
