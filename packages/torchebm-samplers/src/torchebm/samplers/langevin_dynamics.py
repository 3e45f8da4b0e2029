"""0.8.9 import path `torchebm.samplers.langevin_dynamics`; new code imports these names from `torchebm.samplers`."""

from torchebm.core import BaseModel, BaseSampler, BaseScheduler
from torchebm.integrators import BaseSDERungeKuttaIntegrator, resolve_integrator
from torchebm.samplers import LangevinDynamics

__all__ = [
    "LangevinDynamics",
    "BaseModel",
    "BaseSampler",
    "BaseScheduler",
    "BaseSDERungeKuttaIntegrator",
    "resolve_integrator",
]
