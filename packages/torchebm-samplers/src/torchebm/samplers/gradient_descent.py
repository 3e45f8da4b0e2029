"""Alias of ``torchebm.samplers`` at the torchebm 0.8.9 module path ``torchebm.samplers.gradient_descent``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.samplers``.
"""

from torchebm.samplers import (
    GradientDescentSampler,
    NesterovSampler,
)

__all__ = [
    "GradientDescentSampler",
    "NesterovSampler",
]
