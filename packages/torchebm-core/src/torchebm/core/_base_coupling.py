"""Coupling bases (owned by the flows work; placeholder until it lands)."""

from __future__ import annotations

from abc import ABC

__all__ = ["BaseCoupling", "BaseCostCoupling", "BaseModelCoupling", "CouplingResult"]


class CouplingResult:
    """Placeholder."""


class BaseCoupling(ABC):
    """Placeholder."""


class BaseCostCoupling(BaseCoupling):
    """Placeholder."""


class BaseModelCoupling(BaseCoupling):
    """Placeholder."""
