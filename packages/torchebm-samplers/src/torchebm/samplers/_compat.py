"""Seed-era argument names kept working (one ``DeprecationWarning`` each)."""

from __future__ import annotations

from typing import Any

from torchebm.core import warn_once

__all__ = ["resolve_model"]


def resolve_model(owner: str, model: Any, energy_function: Any) -> Any:
    """Return the model, accepting the deprecated ``energy_function=`` keyword of the seed.

    Raises:
        TypeError: neither or both of ``model`` and ``energy_function`` were given.
    """
    if energy_function is not None:
        if model is not None:
            raise TypeError(
                f"{owner} got both model= and the deprecated energy_function=; pass model= only"
            )
        warn_once(
            f"{owner}.energy_function",
            f"{owner}(energy_function=...) is deprecated; use {owner}(model=...) instead",
            DeprecationWarning,
        )
        return energy_function
    if model is None:
        raise TypeError(f"{owner} requires a model (the energy to sample from), got None")
    return model
