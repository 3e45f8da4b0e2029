"""0.8.9 import path `torchebm.integrators.leapfrog`; new code imports these names from `torchebm.integrators`."""

from collections.abc import Callable

import torch

from torchebm.integrators import (
    BaseSymplecticIntegrator,
    GeneralisedLeapfrogIntegrator,
    LeapfrogIntegrator,
    LeapfrogResult,
)

#: torchebm 0.8.9's type of the generalised leapfrog's callbacks ``force(x, p, t)`` and
#: ``velocity(x, p, t)``
HamiltonField = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "GeneralisedLeapfrogIntegrator",
    "LeapfrogIntegrator",
    "LeapfrogResult",
    "BaseSymplecticIntegrator",
]
