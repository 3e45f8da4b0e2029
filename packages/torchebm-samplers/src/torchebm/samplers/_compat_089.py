r"""Constructor arguments of the samplers that torchebm 0.8.9 stored differently.

Used by the ``__setstate__`` that rebuilds a sampler pickled whole by 0.8.9
(`torchebm.integrators._compat_089.accept_089_pickle`); every other argument is read from
the 0.8.9 attribute of its own name.
"""

from __future__ import annotations

from typing import Any

from torchebm.integrators._compat_089 import OMIT, Old089

__all__ = ["flow_overrides", "langevin_overrides"]


def langevin_overrides(old: Old089) -> dict[str, Any]:
    """``decay`` never had an effect in 0.8.9 and only ``0.0`` is accepted now."""
    return {"decay": 0.0}


def flow_overrides(old: Old089) -> dict[str, Any]:
    """The SDE-only options were stored in ODE mode too (passing them now is an error) and
    ``last_step_size`` as ``0.0`` when ``last_step`` is ``None`` (now its default)."""
    found: dict[str, Any] = {}
    sde_only = ("diffusion_form", "diffusion_norm", "last_step", "last_step_size")
    if old.get("mode") != "sde":
        found.update(dict.fromkeys(sde_only, OMIT))
    elif old.get("last_step") is None:
        found["last_step_size"] = None
    return found
