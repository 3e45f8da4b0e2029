"""Alias of ``torchebm.models`` at the torchebm 0.8.9 module path ``torchebm.models.wrappers``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.models``.
"""

from torchebm.models import (
    ClassifierFreeGuidance,
    EqMEnergy,
    InteractionModel,
)

__all__ = [
    "ClassifierFreeGuidance",
    "EqMEnergy",
    "InteractionModel",
]
