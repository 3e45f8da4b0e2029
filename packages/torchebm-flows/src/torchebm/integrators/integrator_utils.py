"""0.8.9 import path `torchebm.integrators.integrator_utils`; new code imports these names from `torchebm.integrators`."""

from torchebm.core import BaseIntegrator
from torchebm.integrators import _integrate_time_grid, get_integrator, resolve_integrator

__all__ = ["get_integrator", "resolve_integrator", "BaseIntegrator", "_integrate_time_grid"]
