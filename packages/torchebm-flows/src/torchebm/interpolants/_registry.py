r"""Name registry of interpolants: ``get_interpolant`` and ``resolve_interpolant``."""

from __future__ import annotations

import importlib
from typing import Any

from torchebm.core import BaseInterpolant, renamed_kwargs

__all__ = ["get_interpolant", "resolve_interpolant", "INTERPOLANT_NAMES"]

#: registry name -> (class name in ``torchebm.interpolants``, constructor kwargs)
INTERPOLANT_NAMES: dict[str, tuple[str, dict[str, Any]]] = {
    "linear": ("LinearInterpolant", {}),
    "cosine": ("CosineInterpolant", {}),
    "vp": ("VariancePreservingInterpolant", {}),
    "ve": ("VarianceExplodingInterpolant", {}),
    "edm": ("VarianceExplodingInterpolant", {"schedule": "edm"}),
}


@renamed_kwargs(interpolant_type="name")
def get_interpolant(name: str) -> BaseInterpolant:
    """Construct the interpolant registered as ``name`` with its defaults.

    Args:
        name: ``"linear"``, ``"cosine"``, ``"vp"``, ``"ve"`` or ``"edm"``.

    Raises:
        ValueError: unknown name.

    Example:
        >>> get_interpolant("cosine")
        CosineInterpolant()
    """
    if not isinstance(name, str) or name not in INTERPOLANT_NAMES:
        raise ValueError(f"Unknown interpolant: {name}. Choose from {list(INTERPOLANT_NAMES)}")
    cls_name, kwargs = INTERPOLANT_NAMES[name]
    cls = getattr(importlib.import_module("torchebm.interpolants"), cls_name)
    return cls(**kwargs)


def resolve_interpolant(
    interpolant: Any, *, default: str = "linear", owner: str = "this component"
) -> BaseInterpolant:
    """``None`` -> ``get_interpolant(default)``; name -> registry; instance -> itself.

    Raises:
        ValueError: unknown name.
        TypeError: not a name nor a [`BaseInterpolant`][torchebm.core.BaseInterpolant].

    Example:
        >>> resolve_interpolant(None, default="vp", owner="FlowSampler")
        VariancePreservingInterpolant(sigma_min=0.1, sigma_max=20.0)
    """
    if interpolant is None:
        return get_interpolant(default)
    if isinstance(interpolant, str):
        return get_interpolant(interpolant)
    if isinstance(interpolant, BaseInterpolant):
        return interpolant
    raise TypeError(f"{owner} requires a BaseInterpolant; got {type(interpolant).__name__}")
