"""0.8.9 import path `torchebm.utils.ema`; new code imports these names from `torchebm.utils`."""

from torchebm.utils import EMA, requires_grad

__all__ = ["EMA", "requires_grad"]
