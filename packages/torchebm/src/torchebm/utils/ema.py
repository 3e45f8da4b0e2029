"""0.8.9 import path `torchebm.utils.ema`; new code imports these names from `torchebm.utils`."""

from torchebm.utils import EMA

__all__ = ["EMA"]
