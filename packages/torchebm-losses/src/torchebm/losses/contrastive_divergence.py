"""0.8.9 import path `torchebm.losses.contrastive_divergence`; new code imports these names from `torchebm.losses`."""

from torchebm.losses import (
    BaseContrastiveDivergence,
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
)

__all__ = ["ContrastiveDivergence", "PersistentContrastiveDivergence", "BaseContrastiveDivergence"]
