"""Entry checks that read a tensor back to the host, and the block where library code skips
them because it made or already checked the inputs itself.

A user calling `integrate()` or an interpolant method gets a named error for a NaN starting
state, a non-positive tensor mass or a time outside [0, 1] (one host sync per call), and for
a field that returns another shape or dtype than the state's (a comparison per evaluation,
no sync: a `(B, 1)` drift for a `(B, D)` state would broadcast into a wrong update, a float64
one promote a float32 state). Inside a sampler's loop they are off (`BaseSampler.sample`
runs the loop in a context with the flag set: any sampler's steps feed them the chains,
which its NaN policy watches, so a diverged chain is reported by the policy instead of
raising here). Other library code that calls them
on its own inputs (a loss on the times it drew, the likelihood's ODE on its own grid) runs
them inside `checked_inputs()`: no sync per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from torchebm.core.errors import (
    _CHECKED,
    ConfigurationError,
    ShapeError,
    check_finite_tensor,
    check_tensor,
)

__all__ = ["checked_inputs", "check_start", "check_mass", "checked_field", "check_field_dtype"]


class checked_inputs:
    """Skip the synchronising entry checks of integrators and interpolants within the block.

    A class, not a `contextlib.contextmanager` generator: entering and leaving costs about a
    third as much, and a sampler enters it once per step.

    Example:
        >>> from torchebm.interpolants import LinearInterpolant
        >>> with checked_inputs():  # t was drawn in [0, 1] by the caller: no host read
        ...     xt, ut = LinearInterpolant().interpolate(
        ...         torch.zeros(2, 1), torch.ones(2, 1), torch.tensor([0.2, 0.7]))
    """

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _CHECKED.set(True)

    def __exit__(self, *exc: object) -> None:
        _CHECKED.reset(self._token)


def check_start(**tensors: torch.Tensor) -> None:
    """`NonFiniteError` naming the state entry (`state['x']`, ...) that holds NaN/inf: once per
    `integrate()` call, never per step (nothing under `checked_inputs`)."""
    if _CHECKED.get():
        return
    for key, value in tensors.items():
        try:
            check_finite_tensor(f"state[{key!r}]", value)
        except RuntimeError:  # under torch.func.vmap no value is read on the host: unchecked
            continue


def check_mass(mass: torch.Tensor) -> None:
    """A tensor mass must be non-empty with positive finite entries (one host read; nothing
    under `checked_inputs`, where the caller checked it when it was set, nor for a mass
    batched by ``torch.func.vmap``, whose values cannot be read)."""
    check_tensor("mass", mass, non_empty=False)  # a complex one failed in the comparison
    if _CHECKED.get():
        return
    ok = ((mass > 0) & (mass < float("inf"))).flatten()  # NaN fails both
    try:
        if mass.numel() > 0 and bool(ok.all()):
            return
    except RuntimeError:  # a mass batched by torch.func.vmap: no value read on the host
        return
    bad = torch.nonzero(~ok).flatten()[:8]
    square = mass.ndim == 2 and mass.shape[0] == mass.shape[1] > 1
    hint = (  # torch.eye(d): a mass matrix, where the diagonal is wanted
        "; a mass matrix is not accepted: pass its diagonal (mass=M.diagonal()), a tensor "
        "of the event shape"
        if square
        else ""
    )
    raise ConfigurationError(
        f"mass must hold positive finite values, got {mass.detach().flatten()[bad].tolist()} "
        f"at flat indices {bad.tolist()} of a mass of shape {tuple(mass.shape)}{hint}"
    )


def checked_field(name: str, fn: Callable[..., Any], x: torch.Tensor) -> Callable[..., Any]:
    """``fn`` wrapped to raise `ShapeError` when a call returns anything but a tensor shaped
    like the state ``x``, and `TypeError` when it has another dtype (the update would promote
    the state, float32 to float64, or lose precision silently; a narrower floating dtype is
    accepted under autocast, which computes in half precision by request). A comparison of sizes and
    dtypes per call, no host read; ``fn`` itself under `checked_inputs` (a sampler's loop,
    whose fields the library built)."""
    if _CHECKED.get():
        return fn
    shape, dtype = x.shape, x.dtype

    def checked(*args: Any) -> Any:
        out = fn(*args)
        if not isinstance(out, torch.Tensor) or out.shape != shape:  # numpy: shape alike
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ShapeError(
                f"{name} must return a tensor shaped like the state x {tuple(shape)}, got {got}"
            )
        if out.dtype != dtype:
            check_field_dtype(name, out, dtype)
        return out

    return checked


def check_field_dtype(name: str, out: torch.Tensor, dtype: torch.dtype) -> None:
    """A field's output of another dtype than the state's: accepted under autocast when it is a
    narrower floating dtype (half-precision compute), else a `TypeError` naming both (a float64
    field promoted a float32 state, under autocast too)."""
    narrower = out.is_floating_point() and out.dtype.itemsize < dtype.itemsize
    if narrower and torch.is_autocast_enabled(out.device.type):
        return
    raise TypeError(
        f"{name} returned dtype {out.dtype} for a state x of dtype {dtype}: it must return the "
        f"state's dtype (cast its output, or the model: model.to({dtype}), or the state)"
    )
