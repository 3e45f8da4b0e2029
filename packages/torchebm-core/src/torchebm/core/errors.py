r"""Error types and argument validators shared by every TorchEBM piece.

Messages have one shape: the argument, the value received and what is accepted
(``"step_size must be positive, got -0.01"``). The classes subclass the builtin exceptions
(``ValueError``, ``TypeError``, ...), so ``except ValueError`` keeps working.

Example:
    >>> from torchebm.core.errors import check_positive
    >>> check_positive("step_size", 0.1)
    0.1
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "TorchEBMError",
    "ConfigurationError",
    "ShapeError",
    "NonFiniteError",
    "MissingDependencyError",
    "check_finite",
    "check_positive",
    "check_non_negative",
    "check_int",
    "check_probability",
    "check_in",
    "check_finite_tensor",
    "check_tensor",
    "require",
]


class TorchEBMError(Exception):
    """Base class of every error raised by TorchEBM itself."""


class ConfigurationError(TorchEBMError, ValueError):
    """A hyper-parameter or argument has a value outside what is accepted."""


class ShapeError(TorchEBMError, ValueError):
    """A tensor has a shape the operation cannot accept (e.g. energy not ``(B,)``)."""


class NonFiniteError(TorchEBMError, FloatingPointError):
    """A NaN or infinity appeared (in chains, energies or a loss) where the policy is ``raise``.

    Attributes:
        indices: Batch indices that were non-finite (``None`` when not applicable).
        step: The iteration at which it was detected (``None`` when not applicable).
    """

    def __init__(self, message: str, indices: Any = None, step: int | None = None):
        super().__init__(message)
        self.indices = indices
        self.step = step


class MissingDependencyError(TorchEBMError, ImportError):
    """An optional dependency is missing; the message holds the exact install command."""

    def __init__(self, feature: str, install: str):
        super().__init__(f"{feature} requires an optional dependency; install it with: {install}")
        self.install = install


def _real(name: str, value: Any, kind: str, ok: Any = lambda v: True) -> float:
    """``float(value)`` for a finite real number with ``ok(value)``: else ``TypeError``
    (not a real number) or ``ConfigurationError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a {kind} number, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not (math.isfinite(v) and ok(v)):
        rule = kind if kind == "finite" else f"{kind} and finite"
        raise ConfigurationError(f"{name} must be {rule}, got {value!r}")
    return v


def check_finite(name: str, value: Any) -> float:
    """``float(value)`` for a finite real number (else ``TypeError``/``ConfigurationError``)."""
    return _real(name, value, "finite")


def check_positive(name: str, value: Any) -> float:
    """``float(value)`` for a finite real number > 0 (else ``TypeError``/``ConfigurationError``)."""
    return _real(name, value, "positive", lambda v: v > 0)


def check_non_negative(name: str, value: Any) -> float:
    """``float(value)`` for a finite real number >= 0 (else ``TypeError``/``ConfigurationError``)."""
    return _real(name, value, "non-negative", lambda v: v >= 0)


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """Return ``value`` if it is an ``int`` (not bool) and ``>= minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {v}")
    return v


def check_probability(name: str, value: Any, *, closed_right: bool = True) -> float:
    """Return ``float(value)`` if it lies in ``[0, 1]`` (or ``[0, 1)``), else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    v = float(value)
    ok = 0.0 <= v <= 1.0 if closed_right else 0.0 <= v < 1.0
    if not ok:
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise ConfigurationError(f"{name} must be in {interval}, got {value!r}")
    return v


def check_in(name: str, value: Any, accepted: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``accepted``, else raise ``ConfigurationError``."""
    if value not in accepted:
        raise ConfigurationError(f"{name} must be one of {list(accepted)}, got {value!r}")
    return value


def check_tensor(
    name: str,
    value: Any,
    *,
    ndim: int | None = None,
    min_ndim: int | None = None,
    floating: bool = False,
    non_empty: bool = True,
) -> torch.Tensor:
    """Check that ``value`` is a tensor with the given rank / dtype kind and a non-empty batch."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ShapeError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if min_ndim is not None and value.ndim < min_ndim:
        raise ShapeError(
            f"{name} must have at least {min_ndim} dimensions, got shape {tuple(value.shape)}"
        )
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {value.dtype}")
    if non_empty and value.ndim > 0 and value.shape[0] == 0:
        raise ShapeError(f"{name} must have a non-empty batch, got shape {tuple(value.shape)}")
    return value


def check_finite_tensor(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise `NonFiniteError` naming the batch rows holding NaN/inf (syncs: entry points only)."""
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        rows = (~finite).reshape(value.shape[0], -1).any(dim=1) if value.ndim > 0 else ~finite
        idx = torch.nonzero(rows).flatten().tolist() if value.ndim > 0 else []
        shown = idx[:10]
        more = "" if len(idx) <= 10 else f" (and {len(idx) - 10} more)"
        raise NonFiniteError(
            f"{name} contains NaN or inf values at batch indices {shown}{more}", indices=idx
        )
    return value


def require(condition: bool, message: str, error: type[Exception] = ConfigurationError) -> None:
    """Raise ``error(message)`` unless ``condition`` holds (never use ``assert`` on user input)."""
    if not condition:
        raise error(message)
