"""Alias of ``torchebm.integrators`` at the torchebm 0.8.9 module path ``torchebm.integrators.dopri``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.integrators``.
"""

from torchebm.integrators import (
    Dopri5Integrator,
    Dopri8Integrator,
)

__all__ = [
    "Dopri5Integrator",
    "Dopri8Integrator",
]
