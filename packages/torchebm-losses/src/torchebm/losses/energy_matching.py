"""0.8.9 import path `torchebm.losses.energy_matching`; new code imports these names from `torchebm.losses`."""

from torchebm.losses import EnergyMatchingLoss

__all__ = ["EnergyMatchingLoss"]
