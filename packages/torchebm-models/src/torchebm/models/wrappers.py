"""0.8.9 import path `torchebm.models.wrappers`; new code imports these names from `torchebm.models`."""

from torchebm.models import ClassifierFreeGuidance, EqMEnergy, InteractionModel

__all__ = ["ClassifierFreeGuidance", "EqMEnergy", "InteractionModel"]
