"""0.8.9 import path `torchebm.core.base_trainer`; new code imports these names from `torchebm.core`."""

from torchebm.core import BaseTrainer, ContrastiveDivergenceTrainer  # noqa: F401 (0.8.9 had it)

__all__ = ["BaseTrainer"]
