"""0.8.9 import path `torchebm.samplers.langevin_dynamics`; new code imports these names from `torchebm.samplers`."""

from torchebm.samplers import LangevinDynamics

__all__ = ["LangevinDynamics"]
