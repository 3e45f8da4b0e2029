r"""Evaluate 2-D energies and vector fields on a regular grid (numpy out, torch in)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from torchebm.core._module import warn_user
from torchebm.core.errors import (
    ConfigurationError,
    ShapeError,
    check_energies,
    check_finite,
    check_int,
)

__all__ = [
    "energy_grid",
    "vector_field_grid",
    "to_numpy_2d",
    "model_placement",
    "check_limits",
]


def check_limits(name: str, lim: Any) -> tuple[float, float]:
    """Validate an axis range ``(lo, hi)`` with ``lo < hi`` and return it as floats."""
    try:
        lo, hi = (float(v) for v in lim)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (lo, hi) of numbers, got {lim!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo >= hi:
        raise ConfigurationError(f"{name} must be a finite pair (lo, hi) with lo < hi, got {lim!r}")
    return lo, hi


def model_placement(model: Any) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype to evaluate ``model`` with.

    TorchEBM modules report ``device``/``dtype`` themselves; for other ``nn.Module``s the
    first floating parameter or buffer decides; plain callables run on CPU in float32.
    """
    dev = getattr(model, "device", None)
    dt = getattr(model, "dtype", None)
    if isinstance(dev, torch.device) and isinstance(dt, torch.dtype) and dt.is_floating_point:
        return dev, dt
    if isinstance(model, torch.nn.Module):
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def to_numpy_2d(name: str, x: Any) -> np.ndarray:
    """Points ``(N, 2)`` (tensor or array-like) as a float64 numpy array, validated."""
    if isinstance(x, torch.Tensor):
        arr = x.detach().to("cpu", torch.float64).numpy()
    else:
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} must be a tensor or array of shape (N, 2), got {type(x).__name__}"
            ) from None
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ShapeError(f"{name} must have shape (N, 2), got {tuple(arr.shape)}")
    return arr


def _grid_points(
    model: Any, xlim: Sequence[float], ylim: Sequence[float] | None, grid_size: int
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """``(X, Y, pts)``: the ``np.meshgrid`` of the validated axes and its points ``(N, 2)``
    as a tensor on ``model``'s device and dtype (see `model_placement`)."""
    grid_size = check_int("grid_size", grid_size, minimum=2)
    x_lo, x_hi = check_limits("xlim", xlim)
    y_lo, y_hi = check_limits("ylim", ylim if ylim is not None else xlim)
    X, Y = np.meshgrid(np.linspace(x_lo, x_hi, grid_size), np.linspace(y_lo, y_hi, grid_size))
    device, dtype = model_placement(model)
    pts = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], axis=1), dtype=dtype, device=device)
    return X, Y, pts


def _grid_conditioning(kwargs: dict[str, Any], n: int, start: int, stop: int) -> dict[str, Any]:
    """The conditioning of grid points ``start:stop`` of ``n``: a tensor of ``n`` rows (one per
    point, in the grid's order) is sliced with them; anything else (a 0-d or one-row tensor
    the model broadcasts, a number) passes as it is."""
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n:
            value = value[start:stop]
        out[key] = value
    return out


@torch.no_grad()
def energy_grid(
    model: Callable[..., torch.Tensor],
    xlim: Sequence[float] = (-3.0, 3.0),
    ylim: Sequence[float] | None = None,
    grid_size: int = 100,
    *,
    model_kwargs: dict[str, Any] | None = None,
    batch_size: int = 16384,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Energies $E(x, y)$ of a 2-D model on a ``grid_size x grid_size`` grid.

    The model is called on ``(batch, 2)`` chunks of grid points under ``torch.no_grad()``
    on its own device and dtype (see `model_placement`) and must return energies of
    shape ``(batch,)``.

    Args:
        model: Energy model ``(B, 2) -> (B,)`` (any callable; TorchEBM ``BaseModel``s).
        xlim: Range ``(lo, hi)`` of the first coordinate.
        ylim: Range of the second coordinate (default: ``xlim``).
        grid_size: Points per axis (``>= 2``).
        model_kwargs: Conditioning forwarded as ``model(x, **model_kwargs)``: a tensor of
            ``grid_size**2`` rows (one per point, in the order of ``E.ravel()``) is split with
            the points (any tensor of that length is taken as per point); anything else,
            e.g. one label as a 0-d tensor, is passed to every call as it is.
        batch_size: Grid points per model call.

    Returns:
        ``(X, Y, E)``, each a float64 array of shape ``(grid_size, grid_size)``;
        ``X``/``Y`` come from ``np.meshgrid(xs, ys)`` (``"xy"`` indexing), so ``E[i, j]``
        is the energy at ``(xs[j], ys[i])``.

    Raises:
        ShapeError: The model does not return one energy per point.

    Example:
        >>> from torchebm.core import HarmonicModel
        >>> X, Y, E = energy_grid(HarmonicModel(k=2.0), (-1, 1), grid_size=3)
        >>> float(E[0, 0])  # 0.5 * 2 * ((-1)**2 + (-1)**2)
        2.0
    """
    X, Y, pts = _grid_points(model, xlim, ylim, grid_size)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    conditioning = model_kwargs or {}
    chunks = []
    for start in range(0, pts.shape[0], batch_size):
        chunk = pts[start : start + batch_size]
        kwargs = _grid_conditioning(conditioning, pts.shape[0], start, start + chunk.shape[0])
        e = check_energies("model", model(chunk, **kwargs), chunk.shape[0])
        chunks.append(e.detach().to("cpu", torch.float64))
    E = torch.cat(chunks).numpy().reshape(X.shape)
    return X, Y, E


@torch.no_grad()
def vector_field_grid(
    field: Callable[..., torch.Tensor],
    xlim: Sequence[float] = (-3.0, 3.0),
    ylim: Sequence[float] | None = None,
    grid_size: int = 20,
    *,
    t: float | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""A 2-D vector field $f(x, y)$ (or $f(x, y, t)$) on a regular grid.

    Args:
        field: ``field(x)`` or, when ``t`` is given, ``field(x, t)`` with ``t`` a ``(B,)``
            tensor, returning vectors of shape ``(B, 2)``; a tuple output's first entry is
            used (EqM fields may return ``(field, activations)``).
        xlim: Range of the first coordinate.
        ylim: Range of the second coordinate (default: ``xlim``).
        grid_size: Points per axis.
        t: Time fed to the field (``None``: call ``field(x)``).
        model_kwargs: Conditioning forwarded as keyword arguments.

    Returns:
        ``(X, Y, U, V)`` arrays of shape ``(grid_size, grid_size)``: grid coordinates and
        the two field components. NaN/inf vectors (a plot leaves them blank) are kept, with
        one ``RuntimeWarning`` giving their number; all of them non-finite is a
        ``ConfigurationError``.

    Example:
        >>> X, Y, U, V = vector_field_grid(lambda x: -x, (-1, 1), grid_size=3)
        >>> float(U[0, 0]), float(V[0, 0])
        (1.0, 1.0)
    """
    X, Y, pts = _grid_points(field, xlim, ylim, grid_size)
    conditioning = model_kwargs or {}
    if t is None:
        out = field(pts, **conditioning)
    else:
        t = check_finite("t", t)
        tt = torch.full((pts.shape[0],), t, dtype=pts.dtype, device=pts.device)
        out = field(pts, tt, **conditioning)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.shape != pts.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ShapeError(
            f"field must return vectors of shape (B, 2) = {tuple(pts.shape)}, got {shape}"
        )
    uv = out.detach().to("cpu", torch.float64).numpy()
    bad = int((~np.isfinite(uv).all(axis=1)).sum())  # a plot leaves such arrows out, blank
    if bad == len(uv):
        raise ConfigurationError(f"field returned NaN/inf at every one of the {bad} grid points")
    if bad:
        warn_user(
            f"field returned NaN/inf at {bad} of {len(uv)} grid points (left blank in a plot)",
            RuntimeWarning,
        )
    return X, Y, uv[:, 0].reshape(X.shape), uv[:, 1].reshape(X.shape)
