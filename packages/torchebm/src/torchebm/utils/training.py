"""Alias of ``torchebm.core`` at the torchebm 0.8.9 module path ``torchebm.utils.training``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.core``.
"""

from torchebm.core import (
    load_checkpoint,
    requires_grad,
    save_checkpoint,
    update_ema,
)

__all__ = [
    "load_checkpoint",
    "requires_grad",
    "save_checkpoint",
    "update_ema",
]
