"""0.8.9 import path `torchebm.integrators.rk4`; new code imports these names from `torchebm.integrators`."""

from torchebm.integrators import BaseRungeKuttaIntegrator, RK4Integrator, RK438Integrator

__all__ = ["RK438Integrator", "RK4Integrator", "BaseRungeKuttaIntegrator"]
