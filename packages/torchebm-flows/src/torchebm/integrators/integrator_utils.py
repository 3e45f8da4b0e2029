"""Alias of ``torchebm.integrators`` at the torchebm 0.8.9 module path ``torchebm.integrators.integrator_utils``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.integrators``.
"""

from torchebm.integrators import (
    get_integrator,
    resolve_integrator,
)

__all__ = [
    "get_integrator",
    "resolve_integrator",
]
