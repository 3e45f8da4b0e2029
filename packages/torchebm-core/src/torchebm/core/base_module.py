"""0.8.9 import path `torchebm.core.base_module`; new code imports these names from `torchebm.core`."""

from torchebm.core import TorchEBMModule, substitute_condition, warn_once

__all__ = ["TorchEBMModule", "substitute_condition", "warn_once"]
