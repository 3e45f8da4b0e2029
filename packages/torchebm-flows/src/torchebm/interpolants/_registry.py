r"""Name registry of interpolants: ``get_interpolant`` and ``resolve_interpolant``.

It also holds the registry machinery the name registries of the flows distribution share
(interpolants, integrators, couplings): `registered_class` looks a class up by its
registry name, `resolve_registered` turns ``None`` / a name / an instance into a checked
instance. Interpolants are the bottom of the distribution (they import only core), so the
other portions can import this module without a cycle.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from torchebm.core import BaseInterpolant, renamed_kwargs
from torchebm.core.errors import ConfigurationError

__all__ = ["get_interpolant", "resolve_interpolant", "INTERPOLANT_NAMES"]

#: registry name -> (class name in ``torchebm.interpolants``, constructor kwargs)
INTERPOLANT_NAMES: dict[str, tuple[str, dict[str, Any]]] = {
    "linear": ("LinearInterpolant", {}),
    "cosine": ("CosineInterpolant", {}),
    "vp": ("VariancePreservingInterpolant", {}),
    "ve": ("VarianceExplodingInterpolant", {}),
    "edm": ("VarianceExplodingInterpolant", {"schedule": "edm"}),
}


def registered_class(table: Mapping[str, str], name: Any, *, kind: str, package: str) -> Any:
    """The class registered as `name`: `table` maps registry names to class names exported
    by the module `package`.

    Args:
        table: Registry name -> class name.
        name: The name asked for.
        kind: What the registry holds, for the error message (``"coupling"``).
        package: The module exporting the classes (``"torchebm.couplings"``).

    Returns:
        The class (not an instance).

    Raises:
        ValueError: `name` is not a string registered in `table`.

    Example:
        >>> registered_class({"vp": "VariancePreservingInterpolant"}, "vp",
        ...                  kind="interpolant", package="torchebm.interpolants").__name__
        'VariancePreservingInterpolant'
    """
    if not isinstance(name, str) or name not in table:
        raise ConfigurationError(f"Unknown {kind} {name!r}. Valid names: {sorted(table)}")
    return getattr(importlib.import_module(package), table[name])


def resolve_registered(
    value: Any,
    build: Callable[[str], Any],
    *,
    default: str,
    family: type | tuple[type, ...],
    owner: str,
) -> Any:
    """``None`` -> ``build(default)``; a name -> ``build(name)``; an instance -> itself;
    then the result must be an instance of `family`.

    Args:
        value: ``None``, a registry name or an instance.
        build: Constructs the object registered under a name.
        default: The name used when `value` is ``None``.
        family: Accepted class(es).
        owner: The caller, named in the error message.

    Returns:
        The object.

    Raises:
        TypeError: the object is not an instance of `family`.

    Example:
        >>> resolve_registered("cosine", get_interpolant, default="linear",
        ...                    family=BaseInterpolant, owner="demo")
        CosineInterpolant()
    """
    if value is None or isinstance(value, str):
        value = build(default if value is None else value)
    if not isinstance(value, family):
        names = (
            " or ".join(f.__name__ for f in family)
            if isinstance(family, tuple)
            else family.__name__
        )
        if isinstance(value, type):  # the class itself, e.g. integrator=HeunIntegrator
            fix = f": pass an instance, {value.__name__}()" if issubclass(value, family) else ""
            got = f"got the class {value.__name__}{fix}"
            raise TypeError(f"{owner} requires a {names} instance or a registry name; {got}")
        raise TypeError(f"{owner} requires a {names}; got {type(value).__name__}")
    return value


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
        raise ConfigurationError(
            f"Unknown interpolant: {name}. Choose from {list(INTERPOLANT_NAMES)}"
        )
    cls_name, kwargs = INTERPOLANT_NAMES[name]
    cls = getattr(importlib.import_module("torchebm.interpolants"), cls_name)
    return cls(**kwargs)


def resolve_interpolant(
    interpolant: Any, *, default: str = "linear", owner: str = "this component"
) -> BaseInterpolant:
    """``None`` -> ``get_interpolant(default)``; name -> registry; instance -> itself.

    Args:
        interpolant: ``None``, a registered name (``"linear"``, ``"cosine"``, ``"vp"``, ...)
            or an interpolant instance.
        default: Name used when ``interpolant`` is ``None``.
        owner: Who asks, named in the error messages.

    Raises:
        ValueError: unknown name.
        TypeError: not a name nor a [`BaseInterpolant`][torchebm.core.BaseInterpolant].

    Example:
        >>> resolve_interpolant(None, default="vp", owner="FlowSampler")
        VariancePreservingInterpolant(sigma_min=0.1, sigma_max=20.0)
    """
    return resolve_registered(
        interpolant, get_interpolant, default=default, family=BaseInterpolant, owner=owner
    )
