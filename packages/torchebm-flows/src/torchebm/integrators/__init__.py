r"""``torchebm.integrators``: ODE, SDE and symplectic integrators (part of ``torchebm-flows``).

Every integrator operates on a state dict (``{"x"}`` or ``{"x", "p"}``) and takes its vector
field as a callable ``drift(x, t)`` (``force``/``velocity`` for the generalised leapfrog).
Runge-Kutta methods are Butcher tableaux run by
``BaseRungeKuttaIntegrator`` (exported here and, lazily, from ``torchebm.core``); adaptive ones (``dopri5``, ``dopri8``,
``bosh3``, ``adaptive_heun``) control the step with ``atol``/``rtol``. Time grids may
decrease (backward integration). The symplectic integrators (``BaseSymplecticIntegrator``,
also exported lazily from ``torchebm.core``) return a ``LeapfrogResult``.

Example:
    >>> import torch
    >>> from torchebm.integrators import get_integrator
    >>> rk4 = get_integrator("rk4")
    >>> out = rk4.integrate({"x": torch.ones(4, 2)}, 0.1, 10, drift=lambda x, t: -x)
"""

from importlib.metadata import version as _version

from torchebm.integrators._base_runge_kutta import (
    BaseRungeKuttaIntegrator,
    BaseSDERungeKuttaIntegrator,
    _integrate_time_grid,
)
from torchebm.integrators._base_symplectic import BaseSymplecticIntegrator
from torchebm.integrators._euler_maruyama import (
    BackwardEulerMaruyamaIntegrator,
    EulerMaruyamaIntegrator,
)
from torchebm.integrators._heun import AdaptiveHeunIntegrator, HeunIntegrator
from torchebm.integrators._leapfrog import (
    GeneralisedLeapfrogIntegrator,
    LeapfrogIntegrator,
    LeapfrogResult,
)
from torchebm.integrators._registry import INTEGRATOR_NAMES, get_integrator, resolve_integrator
from torchebm.integrators._runge_kutta import (
    Bosh3Integrator,
    Dopri5Integrator,
    Dopri8Integrator,
    MidpointIntegrator,
    RK4Integrator,
    RK438Integrator,
)

__version__ = _version("torchebm-flows")

__all__ = [
    "BaseRungeKuttaIntegrator",
    "BaseSDERungeKuttaIntegrator",
    "BaseSymplecticIntegrator",
    "get_integrator",
    "resolve_integrator",
    "INTEGRATOR_NAMES",
    "EulerMaruyamaIntegrator",
    "BackwardEulerMaruyamaIntegrator",
    "HeunIntegrator",
    "LeapfrogIntegrator",
    "GeneralisedLeapfrogIntegrator",
    "LeapfrogResult",
    "Dopri5Integrator",
    "Dopri8Integrator",
    "RK4Integrator",
    "RK438Integrator",
    "MidpointIntegrator",
    "AdaptiveHeunIntegrator",
    "Bosh3Integrator",
    "_integrate_time_grid",
]
