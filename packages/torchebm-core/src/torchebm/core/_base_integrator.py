r"""Integrator contract: `BaseIntegrator`, plus the step helpers its subclasses share.

An integrator is *data plus a small step*. `BaseIntegrator` is the extension point (a `step` and an
`integrate` on a state dict `{"x"}` or `{"x", "p"}`, returning a new state; input tensors are never
mutated). Drift callables have the signature `drift(x, t) -> Tensor` with `t` a `(B,)` tensor.

The Butcher-tableau driver (`BaseRungeKuttaIntegrator`, `BaseSDERungeKuttaIntegrator`, fixed-grid
and adaptive stepping) and the symplectic integrators (`BaseSymplecticIntegrator`, the leapfrogs)
live in the flows distribution (`torchebm.integrators`); `torchebm.core` still exports those names
lazily when `torchebm-flows` is installed."""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch

from torchebm.core._base_interpolant import expand_t_like_x
from torchebm.core._module import TorchEBMModule
from torchebm.core.errors import ConfigurationError

__all__ = ["BaseIntegrator"]

Drift = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepSize = "float | torch.Tensor"


def _prep_step(step_size: Any, x: torch.Tensor, name: str = "step_size") -> tuple[Any, Any]:
    """Return ``(h_x, h_t)``: the step broadcastable against ``x`` and against a ``(B,)`` time.

    Python numbers stay Python floats (no tensor allocation on the hot path); a one-element
    tensor becomes a 0-d tensor; a ``(B,)`` tensor gives per-sample steps."""
    if isinstance(step_size, bool):
        raise TypeError(f"{name} must be a number or a tensor, got {step_size!r}")
    if isinstance(step_size, numbers.Real):  # numpy scalars too
        hf = float(step_size)
        if not math.isfinite(hf):
            raise ConfigurationError(f"{name} must be finite, got {step_size!r}")
        return hf, hf
    if isinstance(step_size, torch.Tensor):
        if step_size.numel() == 1:
            h0 = step_size.reshape(()).to(device=x.device, dtype=x.dtype)
            return h0, h0
        if step_size.ndim == 1 and x.ndim >= 1 and step_size.shape[0] == x.shape[0]:
            hb = step_size.to(device=x.device, dtype=x.dtype)
            return expand_t_like_x(hb, x), hb
        what = f"{name} must be a scalar or a (B,) tensor with B={x.shape[0]}"
        raise ConfigurationError(f"{what}, got shape {tuple(step_size.shape)}")
    raise TypeError(f"{name} must be a number or a tensor, got {type(step_size).__name__}")


def _require_callable(name: str, fn: Any, hint: str = "") -> Callable:
    if fn is None:
        raise ConfigurationError(
            f"{name} must be provided explicitly as a callable {hint}".rstrip()
            + " (integrators never take a model)"
        )
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    return fn


class _Evaluations:
    """Vector-field evaluations of the current call: a plain counter object, so that hot
    loops increment an int instead of going through ``nn.Module.__setattr__``."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class BaseIntegrator(TorchEBMModule, ABC):
    r"""Abstract integrator: ``step`` advances a state dict once, ``integrate`` many times.

    Attributes:
        nfe: Number of vector-field (drift/force/velocity) evaluations made by the last
            ``step`` or ``integrate`` call (a subclass counts them: ``self.nfe += 1``).

    Args:
        device: Device of the (empty) probe buffer; integrators hold no tensors.
        dtype: Dtype of the probe buffer (default ``torch.get_default_dtype()``)."""

    def __init__(self, device: Any = None, dtype: torch.dtype | None = None):
        super().__init__(device=device, dtype=dtype)
        self._evaluations = _Evaluations()
        self._zeros_cache: torch.Tensor | None = None

    @property
    def nfe(self) -> int:
        """Vector-field evaluations made by the last `step` or `integrate` call."""
        return self._evaluations.count

    @nfe.setter
    def nfe(self, value: int) -> None:
        self._evaluations.count = int(value)

    @abstractmethod
    def step(self, state: dict, step_size: Any, *args, **kwargs) -> dict:
        """Advance ``state`` by one step of size ``step_size``."""

    @abstractmethod
    def integrate(self, state: dict, step_size: Any, n_steps: Any, *args, **kwargs) -> dict:
        """Advance ``state`` by ``n_steps`` steps (or over a time grid)."""

    def _zeros_t(self, x: torch.Tensor) -> torch.Tensor:
        """A cached read-only ``(B,)`` zero time vector matching ``x`` (no per-step allocation)."""
        if torch.compiler.is_compiling():  # a new one: guards on the cache doubled the entries
            return torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        z = self._zeros_cache
        if z is None or z.shape[0] != x.shape[0] or z.device != x.device or z.dtype != x.dtype:
            z = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
            self._zeros_cache = z
        return z

    def _time_vector(self, t: Any, x: torch.Tensor) -> torch.Tensor:
        if t is None:
            return self._zeros_t(x)
        if isinstance(t, numbers.Real) and not isinstance(t, bool):  # numpy scalars too
            return torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)
        if isinstance(t, torch.Tensor):
            if t.numel() == 1:
                return t.reshape(()).to(device=x.device, dtype=x.dtype).expand(x.shape[0])
            if t.ndim == 1 and t.shape[0] == x.shape[0]:
                return t.to(device=x.device, dtype=x.dtype)
            raise ConfigurationError(
                f"t must be a scalar or a (B,) tensor with B={x.shape[0]}, got shape {tuple(t.shape)}"
            )
        raise TypeError(f"t must be a number or a tensor, got {type(t).__name__}")

    _require_callable = staticmethod(_require_callable)
    _prep_step = staticmethod(_prep_step)

    def extra_repr(self) -> str:
        return ""
