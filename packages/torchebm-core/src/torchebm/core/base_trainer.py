"""0.8.9 import path `torchebm.core.base_trainer`; new code imports these names from `torchebm.core`."""

from torchebm.core import BaseTrainer

__all__ = ["BaseTrainer"]
