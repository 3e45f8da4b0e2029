"""0.8.9 import path `torchebm.integrators.leapfrog`; new code imports these names from `torchebm.integrators`."""

from torchebm.integrators import (
    BaseSymplecticIntegrator,
    GeneralisedLeapfrogIntegrator,
    LeapfrogIntegrator,
    LeapfrogResult,
)

__all__ = [
    "GeneralisedLeapfrogIntegrator",
    "LeapfrogIntegrator",
    "LeapfrogResult",
    "BaseSymplecticIntegrator",
]
