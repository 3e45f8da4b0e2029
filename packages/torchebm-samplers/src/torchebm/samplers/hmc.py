"""0.8.9 import path `torchebm.samplers.hmc`; new code imports these names from `torchebm.samplers`."""

from torchebm.core import BaseModel, BaseSampler, BaseScheduler
from torchebm.integrators import (
    BaseSymplecticIntegrator,
    GeneralisedLeapfrogIntegrator,
    resolve_integrator,
)
from torchebm.samplers import HamiltonianMonteCarlo, RiemannianManifoldHMC

__all__ = [
    "HamiltonianMonteCarlo",
    "RiemannianManifoldHMC",
    "BaseModel",
    "BaseSampler",
    "BaseScheduler",
    "BaseSymplecticIntegrator",
    "GeneralisedLeapfrogIntegrator",
    "resolve_integrator",
]
