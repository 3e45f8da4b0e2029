"""0.8.9 import path `torchebm.core.base_integrator`; new code imports these names from `torchebm.core`."""

from torchebm.core import (  # torchebm-flows
    BaseRungeKuttaIntegrator,
    BaseSDERungeKuttaIntegrator,
    BaseSymplecticIntegrator,  # torchebm-flows
    _base_integrator,
)
from torchebm.core._base_integrator import *  # noqa: F403

__all__ = [
    *_base_integrator.__all__,
    "BaseRungeKuttaIntegrator",
    "BaseSDERungeKuttaIntegrator",
    "BaseSymplecticIntegrator",
]
