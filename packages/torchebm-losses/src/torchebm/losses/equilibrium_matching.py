"""0.8.9 import path `torchebm.losses.equilibrium_matching`; new code imports these names from `torchebm.losses`."""

from torchebm.losses import EquilibriumMatchingLoss

__all__ = ["EquilibriumMatchingLoss"]
