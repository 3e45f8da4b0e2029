"""0.8.9 import path `torchebm.integrators.dopri`; new code imports these names from `torchebm.integrators`."""

from torchebm.integrators import BaseRungeKuttaIntegrator, Dopri5Integrator, Dopri8Integrator

__all__ = ["Dopri5Integrator", "Dopri8Integrator", "BaseRungeKuttaIntegrator"]
