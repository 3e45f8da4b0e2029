"""0.8.9 import path `torchebm.integrators.midpoint`; new code imports these names from `torchebm.integrators`."""

from torchebm.integrators import BaseRungeKuttaIntegrator, MidpointIntegrator

__all__ = ["MidpointIntegrator", "BaseRungeKuttaIntegrator"]
