"""0.8.9 import path `torchebm.integrators.heun`; new code imports these names from `torchebm.integrators`."""

from torchebm.integrators import BaseSDERungeKuttaIntegrator, HeunIntegrator

__all__ = ["HeunIntegrator", "BaseSDERungeKuttaIntegrator"]
