"""0.8.9 import path `torchebm.utils.training`; new code imports these names from `torchebm.core`."""

from torchebm.core import load_checkpoint, requires_grad, save_checkpoint, update_ema

__all__ = ["load_checkpoint", "requires_grad", "save_checkpoint", "update_ema"]
