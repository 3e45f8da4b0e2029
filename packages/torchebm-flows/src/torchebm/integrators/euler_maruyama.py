"""0.8.9 import path `torchebm.integrators.euler_maruyama`; new code imports these names from `torchebm.integrators`."""

from torchebm.integrators import (
    BackwardEulerMaruyamaIntegrator,
    BaseSDERungeKuttaIntegrator,
    EulerMaruyamaIntegrator,
)

__all__ = [
    "BackwardEulerMaruyamaIntegrator",
    "EulerMaruyamaIntegrator",
    "BaseSDERungeKuttaIntegrator",
]
