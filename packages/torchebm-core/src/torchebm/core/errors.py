r"""Error types and argument validators shared by every TorchEBM piece.

Messages have one shape: the argument, the value received and what is accepted
(``"step_size must be positive and finite, got -0.01"``). The classes subclass the builtin
exceptions (``ValueError``, ``TypeError``, ...), so ``except ValueError`` keeps working.

Example:
    >>> from torchebm.core.errors import check_positive
    >>> check_positive("step_size", 0.1)
    0.1
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from contextvars import ContextVar
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
    "check_clamp",
    "check_generator",
    "check_probability",
    "check_in",
    "check_finite_tensor",
    "check_tensor",
    "check_energies",
    "require",
]


#: Set while the library runs on inputs it made or checked: entry checks that sync are skipped.
_CHECKED: ContextVar[bool] = ContextVar("torchebm_checked", default=False)


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
        step: The iteration at which it was detected (``None`` when not applicable)."""

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
    if isinstance(value, bool) or not (type(value) is float or isinstance(value, numbers.Real)):
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
    if type(value) is not int and (type(value) is bool or not isinstance(value, numbers.Integral)):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {v}")
    return v


def check_probability(name: str, value: Any, *, closed_right: bool = True) -> float:
    """Return ``float(value)`` if it lies in ``[0, 1]`` (or ``[0, 1)``), else raise."""
    interval = "[0, 1]" if closed_right else "[0, 1)"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in {interval}, got {value!r}")
    v = float(value)
    if not (0.0 <= v <= 1.0 if closed_right else 0.0 <= v < 1.0):
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
    """Check that ``value`` is a real tensor of the given rank / dtype kind, non-empty batch."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ShapeError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if min_ndim is not None and value.ndim < min_ndim:
        raise ShapeError(
            f"{name} must have at least {min_ndim} dimensions, got shape {tuple(value.shape)}"
        )
    if value.is_complex() or (floating and not value.is_floating_point()):
        kind = "floating-point" if floating else "real (not complex)"
        raise TypeError(f"{name} must have a {kind} dtype, got {value.dtype}")
    if non_empty and value.ndim > 0 and value.shape[0] == 0:
        raise ShapeError(f"{name} must have a non-empty batch, got shape {tuple(value.shape)}")
    return value


def check_energies(owner: str, energies: Any, batch: int) -> torch.Tensor:
    """``energies`` if shaped ``(batch,)``, else a `ShapeError` naming ``owner`` and the result."""
    if isinstance(energies, torch.Tensor) and energies.shape == (batch,):
        return energies
    got = tuple(energies.shape) if isinstance(energies, torch.Tensor) else type(energies).__name__
    raise ShapeError(f"{owner} must return energies of shape (B,) = ({batch},), got {got}")


def check_finite_tensor(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise `NonFiniteError` naming the batch rows holding NaN/inf (syncs: entry points only)."""
    # one reduction: a finite sum means finite entries; a NaN/inf one (or an overflow) is tested
    if value.numel() == 0 or math.isfinite(value.detach().sum().item()):
        return value
    finite = torch.isfinite(value)
    if bool(finite.all()):
        return value  # the sum overflowed
    rows = (~finite).reshape(value.shape[0], -1).any(dim=1) if value.ndim > 0 else ~finite
    idx = torch.nonzero(rows).flatten().tolist() if value.ndim > 0 else []
    more = "" if len(idx) <= 10 else f" (and {len(idx) - 10} more)"
    raise NonFiniteError(
        f"{name} contains NaN or inf values at batch indices {idx[:10]}{more}", indices=idx
    )


def _check_flow_time(t: Any, name: str = "t") -> None:
    """`t` in [0, 1] (flow time: 0 noise, 1 data), never NaN; one host read (none if `_CHECKED`)."""
    if _CHECKED.get():
        return
    v = torch.as_tensor(t).detach().flatten()
    try:
        bad = torch.nonzero(~((v >= 0) & (v <= 1))).flatten().tolist()  # NaN fails both
    except RuntimeError:  # under torch.func.vmap no Python test of values: the caller's then
        return
    if bad:
        err = NonFiniteError if bool(v[bad].isnan().any()) else ConfigurationError
        raise err(f"{name} must lie in [0, 1] (flow time), got {v[bad[:8]].tolist()} at {bad[:8]}")


def require(condition: bool, message: str, error: type[Exception] = ConfigurationError) -> None:
    """Raise ``error(message)`` unless ``condition`` holds (never use ``assert`` on user input)."""
    if not condition:
        raise error(message)


def _real_or_none(name: str, v: Any) -> float | None:
    if v is None:
        return None
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        raise TypeError(f"{name} must be a real number or None, got {v!r} ({type(v).__name__})")
    f = float(v)
    if math.isnan(f):
        raise ConfigurationError(f"{name} must not be NaN, got {v!r}")
    return f


def check_clamp(clamp: Any) -> tuple[float, float] | None:
    """``None`` or ``(lo, hi)`` with ``lo < hi``; either bound may be ``None`` (one-sided).

    The one clamp rule of the library (`LangevinDynamics` and the fused CUDA kernels).
    Returns ``None`` for no clamping, else ``(lo, hi)`` with missing bounds as ``-inf``/``inf``.

    Example:
        >>> check_clamp((None, 1.0))
        (-inf, 1.0)
    """
    if clamp is None:
        return None
    if not isinstance(clamp, (tuple, list)) or len(clamp) != 2:
        raise TypeError(f"clamp must be None or a pair (lo, hi), got {clamp!r}")
    lo = _real_or_none("clamp[0]", clamp[0])
    hi = _real_or_none("clamp[1]", clamp[1])
    if lo is None and hi is None:
        return None
    if lo is not None and hi is not None and not lo < hi:
        raise ConfigurationError(f"clamp must satisfy lo < hi, got {tuple(clamp)!r}")
    return (-math.inf if lo is None else lo, math.inf if hi is None else hi)


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a == b or a.type != b.type:  # the common case, without resolving a missing CUDA index
        return a == b
    i = torch.cuda.current_device() if a.type == "cuda" and None in (a.index, b.index) else 0
    return (i if a.index is None else a.index) == (i if b.index is None else b.index)


def check_generator(
    generator: Any, device: torch.device | None = None, *, of: str = "x"
) -> torch.Generator | None:
    """``None`` or a ``torch.Generator``; on ``device`` (the device of ``of``) when given.

    The one generator check of the library (samplers, datasets, trainers, CUDA kernels).

    Example:
        >>> check_generator(torch.Generator(), torch.device("cpu")).device
        device(type='cpu')
    """
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    if device is not None and not _same_device(generator.device, torch.device(device)):
        got = f"got a generator on {generator.device}"
        raise ConfigurationError(f"generator must be on the device of {of} ({device}), {got}")
    return generator
