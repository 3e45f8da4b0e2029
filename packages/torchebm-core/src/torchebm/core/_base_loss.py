"""Loss bases (owned by the losses work; placeholder until it lands)."""

from __future__ import annotations

from abc import ABC

from torchebm.core._module import TorchEBMModule
from torchebm.core._schedulable import Schedulable

__all__ = ["BaseLoss", "BaseScoreMatching", "BaseContrastiveDivergence"]


class BaseLoss(Schedulable, TorchEBMModule, ABC):
    """Placeholder."""


class BaseScoreMatching(BaseLoss):
    """Placeholder."""


class BaseContrastiveDivergence(BaseLoss):
    """Placeholder."""
