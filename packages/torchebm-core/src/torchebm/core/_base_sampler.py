"""BaseSampler (owned by the samplers work; placeholder until it lands)."""

from __future__ import annotations

from abc import ABC

from torchebm.core._module import TorchEBMModule
from torchebm.core._schedulable import Schedulable

__all__ = ["BaseSampler"]


class BaseSampler(Schedulable, TorchEBMModule, ABC):
    """Placeholder: replaced by the samplers work."""
