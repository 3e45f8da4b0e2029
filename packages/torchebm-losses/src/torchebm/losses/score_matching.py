"""0.8.9 import path `torchebm.losses.score_matching`; new code imports these names from `torchebm.losses`."""

from torchebm.losses import DenoisingScoreMatching, ScoreMatching, SlicedScoreMatching

__all__ = ["DenoisingScoreMatching", "ScoreMatching", "SlicedScoreMatching"]
