"""Alias of ``torchebm.models.components`` at the torchebm 0.8.9 module path ``torchebm.models.components.heads``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.models.components``.
"""

from torchebm.models.components import (
    AdaLNZeroLinearHead,
    AdaLNZeroPatchHead,
)

__all__ = [
    "AdaLNZeroLinearHead",
    "AdaLNZeroPatchHead",
]
