"""0.8.9 import path `torchebm.integrators.bosh3`; new code imports these names from `torchebm.integrators`."""

from torchebm.integrators import BaseRungeKuttaIntegrator, Bosh3Integrator

__all__ = ["Bosh3Integrator", "BaseRungeKuttaIntegrator"]
