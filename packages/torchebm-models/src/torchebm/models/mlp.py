"""0.8.9 import path `torchebm.models.mlp`; new code imports these names from `torchebm.models`."""

from torchebm.models import TimeConditionedMLP
from torchebm.models.components import AdaLNZeroLinearHead, AdaLNZeroMLPBlock

__all__ = ["TimeConditionedMLP", "AdaLNZeroLinearHead", "AdaLNZeroMLPBlock"]
