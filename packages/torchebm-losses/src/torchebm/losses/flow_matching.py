"""0.8.9 import path `torchebm.losses.flow_matching`; new code imports these names from `torchebm.losses`."""

from torchebm.losses import FlowMatchingLoss

__all__ = ["FlowMatchingLoss"]
