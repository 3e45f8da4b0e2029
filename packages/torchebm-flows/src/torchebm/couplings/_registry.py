r"""Name registry of couplings: ``get_coupling`` and ``resolve_coupling``."""

from __future__ import annotations

import importlib
from typing import Any

from torchebm.core import BaseCoupling

__all__ = ["get_coupling", "resolve_coupling", "COUPLING_NAMES"]

#: registry name -> class name in ``torchebm.couplings`` (``ReflowCoupling`` is instance-only)
COUPLING_NAMES: dict[str, str] = {
    "independent": "IndependentCoupling",
    "ot": "ExactOTCoupling",
    "exact_ot": "ExactOTCoupling",
    "sinkhorn": "SinkhornCoupling",
    "greedy": "GreedyCoupling",
    "unbalanced_sinkhorn": "UnbalancedSinkhornCoupling",
}


def get_coupling(name: str) -> BaseCoupling:
    """Construct the coupling registered as ``name`` with its defaults.

    Raises:
        ValueError: unknown name.

    Example:
        >>> get_coupling("ot")
        ExactOTCoupling(tol=0.0001)
    """
    if not isinstance(name, str) or name not in COUPLING_NAMES:
        raise ValueError(f"Unknown coupling {name!r}. Valid names: {sorted(COUPLING_NAMES)}")
    return getattr(importlib.import_module("torchebm.couplings"), COUPLING_NAMES[name])()


def resolve_coupling(
    coupling: Any,
    *,
    default: str = "independent",
    owner: str = "this component",
    family: type[BaseCoupling] | tuple[type[BaseCoupling], ...] = BaseCoupling,
) -> BaseCoupling:
    """``None`` -> ``get_coupling(default)``; name -> registry; instance -> itself.

    Raises:
        ValueError: unknown name.
        TypeError: not an instance of ``family``.

    Example:
        >>> resolve_coupling(None, default="sinkhorn", owner="EnergyMatchingLoss")
        SinkhornCoupling(reg=0.05, n_iters=100)
    """
    if coupling is None:
        coupling = get_coupling(default)
    elif isinstance(coupling, str):
        coupling = get_coupling(coupling)
    if not isinstance(coupling, family):
        names = (
            " or ".join(f.__name__ for f in family)
            if isinstance(family, tuple)
            else family.__name__
        )
        raise TypeError(f"{owner} requires a {names}; got {type(coupling).__name__}")
    return coupling
