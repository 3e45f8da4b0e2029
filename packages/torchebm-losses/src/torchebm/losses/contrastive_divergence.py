"""Alias of ``torchebm.losses`` at the torchebm 0.8.9 module path ``torchebm.losses.contrastive_divergence``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.losses``.
"""

from torchebm.losses import (
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
)

__all__ = [
    "ContrastiveDivergence",
    "PersistentContrastiveDivergence",
]
