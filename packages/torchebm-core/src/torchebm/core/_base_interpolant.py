"""Interpolant base (owned by the flows work; placeholder until it lands)."""

from __future__ import annotations

from abc import ABC

import torch

__all__ = ["BaseInterpolant", "expand_t_like_x"]


def expand_t_like_x(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape ``t`` of shape ``(B,)`` to ``(B, 1, ..., 1)`` with ``x.ndim`` dims."""
    return t.reshape(t.shape[0], *([1] * (x.ndim - 1)))


class BaseInterpolant(ABC):
    """Placeholder."""
