"""0.8.9 import path `torchebm.core.base_loss`; new code imports these names from `torchebm.core`."""

from torchebm.core import BaseContrastiveDivergence, BaseLoss, BaseScoreMatching

__all__ = ["BaseContrastiveDivergence", "BaseLoss", "BaseScoreMatching"]
