"""Seed-era argument names kept working (one ``DeprecationWarning`` each)."""

from __future__ import annotations

from typing import Any

from torchebm.core import SamplerContext, warn_once
from torchebm.flows._utils import ENERGY_CALL, check_model_object, explain_model_error
from torchebm.integrators._compat_089 import Hooks089

__all__ = ["resolve_model", "explain_energy_call", "SamplerHooks089"]


class SamplerHooks089(Hooks089):
    """Mixin of the library's energy samplers: a subclass's 0.8.9 override of
    ``_model_gradient`` / ``_model_energy`` serves as ``model_gradient`` / ``model_energy``,
    the methods the steps call (see `Hooks089`)."""

    _renamed_hooks = {"_model_gradient": "model_gradient", "_model_energy": "model_energy"}


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
        model = energy_function
    elif model is None:
        raise TypeError(f"{owner} requires a model (the energy to sample from), got None")
    return check_model_object(owner, model)


def explain_energy_call(self: Any, err: TypeError, x: Any, ctx: SamplerContext) -> None:
    """`BaseSampler.explain_type_error` of the energy samplers: a model whose signature
    refuses ``model(x, **model_kwargs)`` is named in a ``ConfigurationError`` (a
    ``TypeError`` too); any other ``TypeError`` is left as it is.

    Args:
        self: The sampler.
        err: The ``TypeError`` raised by the sampling loop.
        x: The starting chains `(B, *event)`.
        ctx: The call's context (its ``model_kwargs``).
    """
    explain_model_error(type(self).__name__, self.model, err, ENERGY_CALL, ctx.model_kwargs)
