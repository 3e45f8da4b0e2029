"""Alias of ``torchebm.integrators`` at the torchebm 0.8.9 module path ``torchebm.integrators.leapfrog``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.integrators``.
"""

from torchebm.integrators import (
    GeneralisedLeapfrogIntegrator,
    LeapfrogIntegrator,
    LeapfrogResult,
)

__all__ = [
    "GeneralisedLeapfrogIntegrator",
    "LeapfrogIntegrator",
    "LeapfrogResult",
]
