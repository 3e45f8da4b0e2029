"""Alias of ``torchebm.utils`` at the torchebm 0.8.9 module path ``torchebm.utils.ema``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.utils``.
"""

from torchebm.utils import (
    EMA,
)

__all__ = [
    "EMA",
]
