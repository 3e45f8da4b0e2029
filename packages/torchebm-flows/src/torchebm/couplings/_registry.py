r"""Name registry of couplings: ``get_coupling`` and ``resolve_coupling``."""

from __future__ import annotations

from typing import Any

from torchebm.core import BaseCoupling
from torchebm.interpolants._registry import registered_class, resolve_registered

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

    Args:
        name: A registered name (``"independent"``, ``"ot"``, ``"sinkhorn"``, ...).

    Raises:
        ValueError: unknown name.

    Example:
        >>> get_coupling("ot")
        ExactOTCoupling(tol=0.0001)
    """
    return registered_class(COUPLING_NAMES, name, kind="coupling", package="torchebm.couplings")()


def resolve_coupling(
    coupling: Any,
    *,
    default: str = "independent",
    owner: str = "this component",
    family: type[BaseCoupling] | tuple[type[BaseCoupling], ...] = BaseCoupling,
) -> BaseCoupling:
    """``None`` -> ``get_coupling(default)``; name -> registry; instance -> itself.

    Args:
        coupling: ``None``, a registered name or a coupling instance.
        default: Name used when ``coupling`` is ``None``.
        owner: Who asks, named in the error messages.
        family: Accepted coupling class(es); an instance of another raises ``TypeError``.

    Raises:
        ValueError: unknown name.
        TypeError: not an instance of ``family``.

    Example:
        >>> resolve_coupling(None, default="sinkhorn", owner="EnergyMatchingLoss")
        SinkhornCoupling(reg=0.05, n_iters=100)
    """
    return resolve_registered(coupling, get_coupling, default=default, family=family, owner=owner)
