"""0.8.9 import path `torchebm.models.wrappers`; new code imports these names from `torchebm.models`."""

from torchebm.core import BaseModel, BaseScheduler, Schedulable, substitute_condition
from torchebm.models import ClassifierFreeGuidance, EqMEnergy, InteractionModel

__all__ = [
    "ClassifierFreeGuidance",
    "EqMEnergy",
    "InteractionModel",
    "BaseModel",
    "BaseScheduler",
    "Schedulable",
    "substitute_condition",
]
