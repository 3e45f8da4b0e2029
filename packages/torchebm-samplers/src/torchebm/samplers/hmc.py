"""0.8.9 import path `torchebm.samplers.hmc`; new code imports these names from `torchebm.samplers`."""

from torchebm.samplers import HamiltonianMonteCarlo, RiemannianManifoldHMC

__all__ = ["HamiltonianMonteCarlo", "RiemannianManifoldHMC"]
