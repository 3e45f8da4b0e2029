"""0.8.9 import path `torchebm.models.components.transformer`; new code imports these names from `torchebm.models.components`."""

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
