"""0.8.9 import path `torchebm.losses.score_matching`; new code imports these names from `torchebm.losses`."""

from torchebm.core import BaseModel
from torchebm.losses import (
    BaseScoreMatching,
    DenoisingScoreMatching,
    ScoreMatching,
    SlicedScoreMatching,
)

__all__ = [
    "DenoisingScoreMatching",
    "ScoreMatching",
    "SlicedScoreMatching",
    "BaseModel",
    "BaseScoreMatching",
]
