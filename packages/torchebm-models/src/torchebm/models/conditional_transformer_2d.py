"""Alias of ``torchebm.models`` at the torchebm 0.8.9 module path ``torchebm.models.conditional_transformer_2d``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.models``.
"""

from torchebm.models import (
    ConditionalTransformer2D,
)

__all__ = [
    "ConditionalTransformer2D",
]
