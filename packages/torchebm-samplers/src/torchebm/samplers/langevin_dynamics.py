"""Alias of ``torchebm.samplers`` at the torchebm 0.8.9 module path ``torchebm.samplers.langevin_dynamics``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.samplers``.
"""

from torchebm.samplers import (
    LangevinDynamics,
)

__all__ = [
    "LangevinDynamics",
]
