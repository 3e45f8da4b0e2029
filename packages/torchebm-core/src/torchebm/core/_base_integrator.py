"""Integrator bases (owned by the flows work; placeholder until it lands)."""

from __future__ import annotations

from torchebm.core._module import TorchEBMModule

__all__ = [
    "BaseIntegrator",
    "BaseRungeKuttaIntegrator",
    "BaseSDERungeKuttaIntegrator",
    "BaseSymplecticIntegrator",
]


class BaseIntegrator(TorchEBMModule):
    """Placeholder."""


class BaseRungeKuttaIntegrator(BaseIntegrator):
    """Placeholder."""


class BaseSDERungeKuttaIntegrator(BaseRungeKuttaIntegrator):
    """Placeholder."""


class BaseSymplecticIntegrator(BaseIntegrator):
    """Placeholder."""
