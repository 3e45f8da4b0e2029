"""0.8.9 import path `torchebm.integrators.adaptive_heun`; new code imports these names from `torchebm.integrators`."""

from torchebm.integrators import AdaptiveHeunIntegrator, BaseRungeKuttaIntegrator

__all__ = ["AdaptiveHeunIntegrator", "BaseRungeKuttaIntegrator"]
