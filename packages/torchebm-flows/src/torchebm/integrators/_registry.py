r"""Name registry of integrators: ``get_integrator`` and ``resolve_integrator``."""

from __future__ import annotations

from typing import Any

import torch

from torchebm.core import BaseIntegrator
from torchebm.core.errors import ConfigurationError
from torchebm.interpolants._registry import registered_class, resolve_registered

__all__ = ["get_integrator", "resolve_integrator", "INTEGRATOR_NAMES"]

#: registry name -> class name exported by ``torchebm.integrators``
INTEGRATOR_NAMES: dict[str, str] = {
    "euler": "EulerMaruyamaIntegrator",
    "euler_maruyama": "EulerMaruyamaIntegrator",
    "backward_euler_maruyama": "BackwardEulerMaruyamaIntegrator",
    "heun": "HeunIntegrator",
    "adaptive_heun": "AdaptiveHeunIntegrator",
    "bosh3": "Bosh3Integrator",
    "dopri5": "Dopri5Integrator",
    "dopri8": "Dopri8Integrator",
    "rk4": "RK4Integrator",
    "rk438": "RK438Integrator",
    "midpoint": "MidpointIntegrator",
    "leapfrog": "LeapfrogIntegrator",
    "generalised_leapfrog": "GeneralisedLeapfrogIntegrator",
    "generalized_leapfrog": "GeneralisedLeapfrogIntegrator",
}


def get_integrator(
    name: str, device: Any = None, dtype: torch.dtype | None = None
) -> BaseIntegrator:
    """Construct the integrator registered as ``name`` with its default settings.

    Args:
        name: One of ``sorted(INTEGRATOR_NAMES)`` (e.g. ``"euler"``, ``"dopri5"``, ``"leapfrog"``).
        device: Device of the integrator.
        dtype: Dtype of the integrator.

    Raises:
        ValueError: unknown (or non-string) name.

    Example:
        >>> type(get_integrator("rk4")).__name__
        'RK4Integrator'
    """
    cls = registered_class(
        INTEGRATOR_NAMES, name, kind="integrator", package="torchebm.integrators"
    )
    return cls(device=device, dtype=dtype)


def _same_device(a: torch.device, b: Any) -> bool:
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    return (a.index or 0) == (b.index or 0)  # an unindexed device compares as index 0


def resolve_integrator(
    integrator: Any,
    *,
    default: str,
    family: type[BaseIntegrator] | tuple[type[BaseIntegrator], ...] = BaseIntegrator,
    owner: str,
    device: Any = None,
    dtype: torch.dtype | None = None,
) -> BaseIntegrator:
    """Turn ``None`` / a registry name / an instance into an integrator of the right family.

    Args:
        integrator: ``None`` (use ``default``), a registry name, or an integrator instance.
        default: Registry name used when ``integrator`` is ``None``.
        family: Accepted base class(es), e.g. ``BaseSDERungeKuttaIntegrator``.
        owner: Name of the caller, used in error messages (e.g. ``"LangevinDynamics"``).
        device: Required device; a name is built on it, an instance must already be on it.
        dtype: Required dtype (same rule).

    Returns:
        The integrator.

    Raises:
        ValueError: unknown name, or an instance whose device/dtype differ from the owner's
            (no implicit ``.to()``).
        TypeError: the integrator is not of ``family`` (or not an integrator at all).

    Example:
        >>> from torchebm.integrators import BaseSDERungeKuttaIntegrator
        >>> resolve_integrator(None, default="euler", family=BaseSDERungeKuttaIntegrator,
        ...                    owner="LangevinDynamics").__class__.__name__
        'EulerMaruyamaIntegrator'
    """
    from_name = integrator is None or isinstance(integrator, str)
    integrator = resolve_registered(
        integrator,
        lambda name: get_integrator(name, device=device, dtype=dtype),
        default=default,
        family=family,
        owner=owner,
    )
    if not from_name:
        if device is not None and not _same_device(integrator.device, device):
            raise ConfigurationError(
                f"{owner}: integrator device {integrator.device} does not match {torch.device(device)}; "
                "move it with integrator.to(...) first"
            )
        if dtype is not None and integrator.dtype != dtype:
            raise ConfigurationError(
                f"{owner}: integrator dtype {integrator.dtype} does not match {dtype}; "
                "convert it with integrator.to(dtype) first"
            )
    return integrator
