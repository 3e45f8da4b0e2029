"""Alias of ``torchebm.samplers`` at the torchebm 0.8.9 module path ``torchebm.samplers.flow``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.samplers``.
"""

from torchebm.samplers import (
    FlowSampler,
    PredictionType,
)

__all__ = [
    "FlowSampler",
    "PredictionType",
]
