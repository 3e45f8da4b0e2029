"""Alias of ``torchebm.interpolants`` at the torchebm 0.8.9 module path ``torchebm.interpolants.cosine``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.interpolants``.
"""

from torchebm.interpolants import (
    CosineInterpolant,
)

__all__ = [
    "CosineInterpolant",
]
