"""Alias of ``torchebm.models.components`` at the torchebm 0.8.9 module path ``torchebm.models.components.transformer``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.models.components``.
"""

from torchebm.models.components import (
    AdaLNZeroBlock,
    AdaLNZeroMLPBlock,
    FeedForward,
    MultiheadSelfAttention,
    modulate,
)

__all__ = [
    "AdaLNZeroBlock",
    "AdaLNZeroMLPBlock",
    "FeedForward",
    "MultiheadSelfAttention",
    "modulate",
]
