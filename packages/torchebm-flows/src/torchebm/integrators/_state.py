"""Shape and state helpers shared by the Runge-Kutta, symplectic and leapfrog integrators."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["fits", "rms_norm", "state_x"]


def fits(shape: Sequence[int], target: Sequence[int]) -> bool:
    """Whether ``shape`` broadcasts against ``target`` without enlarging it.

    Plain Python on the sizes: ``torch.broadcast_shapes`` costs tens of microseconds per
    call (it runs through the symbolic-shape machinery), far more than the update it guards.
    """
    if len(shape) > len(target):
        return False
    return all(a == b or a == 1 for a, b in zip(reversed(shape), reversed(target)))


def rms_norm(z: torch.Tensor) -> torch.Tensor:
    """Root mean square of every entry of ``z`` (a 0-d tensor)."""
    return z.square().mean().sqrt()


def state_x(state: Any) -> torch.Tensor:
    """``state["x"]``, checked to be a tensor in a dict."""
    if not isinstance(state, dict) or "x" not in state:
        raise TypeError(
            f"state must be a dict with key 'x', got {type(state).__name__}"
            + (f" with keys {sorted(state)}" if isinstance(state, dict) else "")
        )
    x = state["x"]
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"state['x'] must be a torch.Tensor, got {type(x).__name__}")
    return x
