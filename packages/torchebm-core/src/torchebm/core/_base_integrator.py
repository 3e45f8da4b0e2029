r"""Integrator contract: `BaseIntegrator` and the symplectic loop, plus the step helpers.

An integrator is *data plus a small step*. `BaseIntegrator` is the extension point (a
`step` and an `integrate` on a state dict `{"x"}` or `{"x", "p"}`, returning a new dict;
input tensors are never mutated). Drift callables have the signature
`drift(x, t) -> Tensor` with `t` a `(B,)` tensor.

The Butcher-tableau driver (`BaseRungeKuttaIntegrator`, `BaseSDERungeKuttaIntegrator`,
fixed-grid and adaptive stepping) lives in the flows distribution
(`torchebm.integrators`); `torchebm.core` still exports both names lazily when
`torchebm-flows` is installed.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch

from torchebm.core._base_interpolant import expand_t_like_x
from torchebm.core._module import TorchEBMModule
from torchebm.core.errors import ConfigurationError

__all__ = ["BaseIntegrator", "BaseSymplecticIntegrator"]

Drift = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepSize = "float | torch.Tensor"


# ----------------------------------------------------------------------------- helpers
def _expand_like(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, ..., 1)`` with ``x.ndim`` dims (0-d tensors pass through)."""
    if v.ndim == 1 and x.ndim > 1:
        return expand_t_like_x(v, x)
    return v


def _prep_step(step_size: Any, x: torch.Tensor, name: str = "step_size") -> tuple[Any, Any]:
    """Return ``(h_x, h_t)``: the step broadcastable against ``x`` and against a ``(B,)`` time.

    Python numbers stay Python floats (no tensor allocation on the hot path); a one-element
    tensor becomes a 0-d tensor; a ``(B,)`` tensor gives per-sample steps.
    """
    if isinstance(step_size, bool):
        raise TypeError(f"{name} must be a number or a tensor, got {step_size!r}")
    if isinstance(step_size, (int, float)):
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
            return _expand_like(hb, x), hb
        raise ConfigurationError(
            f"{name} must be a scalar or a (B,) tensor with B={x.shape[0]}, "
            f"got shape {tuple(step_size.shape)}"
        )
    raise TypeError(f"{name} must be a number or a tensor, got {type(step_size).__name__}")


def _fits(shape: Sequence[int], target: Sequence[int]) -> bool:
    """Whether ``shape`` broadcasts against ``target`` without enlarging it.

    Plain Python on the sizes: ``torch.broadcast_shapes`` costs tens of microseconds per
    call (it runs through the symbolic-shape machinery), far more than the update it guards.
    """
    if len(shape) > len(target):
        return False
    return all(a == b or a == 1 for a, b in zip(reversed(shape), reversed(target)))


def _rms_norm(z: torch.Tensor) -> torch.Tensor:
    return z.square().mean().sqrt()


def _require_callable(name: str, fn: Any, hint: str = "") -> Callable:
    if fn is None:
        raise ConfigurationError(
            f"{name} must be provided explicitly as a callable {hint}".rstrip()
            + " (integrators never take a model)"
        )
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    return fn


def _get_x(state: Any) -> torch.Tensor:
    if not isinstance(state, dict) or "x" not in state:
        raise TypeError(
            f"state must be a dict with key 'x', got {type(state).__name__}"
            + (f" with keys {sorted(state)}" if isinstance(state, dict) else "")
        )
    x = state["x"]
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"state['x'] must be a torch.Tensor, got {type(x).__name__}")
    return x


# ----------------------------------------------------------------------------- bases
class BaseIntegrator(TorchEBMModule, ABC):
    r"""Abstract integrator: ``step`` advances a state dict once, ``integrate`` many times.

    Attributes:
        nfe: Number of vector-field (drift/force/velocity) evaluations made by the last
            ``step`` or ``integrate`` call.

    Args:
        device: Device of the (empty) probe buffer; integrators hold no tensors.
        dtype: Dtype of the probe buffer (default ``torch.get_default_dtype()``).
    """

    def __init__(self, device: Any = None, dtype: torch.dtype | None = None):
        super().__init__(device=device, dtype=dtype)
        self.nfe = 0
        self._zeros_cache: torch.Tensor | None = None

    @abstractmethod
    def step(self, state: dict, step_size: Any, *args, **kwargs) -> dict:
        """Advance ``state`` by one step of size ``step_size``."""

    @abstractmethod
    def integrate(self, state: dict, step_size: Any, n_steps: Any, *args, **kwargs) -> dict:
        """Advance ``state`` by ``n_steps`` steps (or over a time grid)."""

    def _zeros_t(self, x: torch.Tensor) -> torch.Tensor:
        """A cached read-only ``(B,)`` zero time vector matching ``x`` (no per-step allocation)."""
        z = self._zeros_cache
        if z is None or z.shape[0] != x.shape[0] or z.device != x.device or z.dtype != x.dtype:
            z = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
            self._zeros_cache = z
        return z

    def _time_vector(self, t: Any, x: torch.Tensor) -> torch.Tensor:
        if t is None:
            return self._zeros_t(x)
        if isinstance(t, (int, float)) and not isinstance(t, bool):
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


class BaseSymplecticIntegrator(BaseIntegrator):
    r"""Base of Hamiltonian (symplectic) integrators on states ``{"x", "p"}``.

    The base owns the loop and the safety guards; a subclass implements
    ``_step_impl(x, p, h, ctx, cache, safe) -> (x, p, cache)`` where ``cache`` carries a
    force evaluation from one step to the next (leapfrog needs one force per step).

    Class attribute ``separable``: ``True`` for $H = U(x) + \tfrac12 p^\top M^{-1}p$
    (callbacks ``drift(x, t) = -\nabla U`` and ``mass``), ``False`` for general
    $H(x, p)$ (callbacks ``force(x, p, t) = -\partial H/\partial x`` and
    ``velocity(x, p, t) = \partial H/\partial p``). Hamiltonians are autonomous: callbacks
    receive ``t = zeros(B)``.

    ``safe=True`` clamps forces and positions to $\pm 10^6$ and replaces NaNs in the
    new ``(x, p)`` by 0 (no host sync); HMC samplers use it and reject such proposals.
    """

    separable: bool = True
    _SAFE_CLAMP = 1e6

    @staticmethod
    def _validate_n_steps(n_steps: Any) -> int:
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps <= 0:
            raise ConfigurationError(f"n_steps must be positive, got {n_steps!r}")
        return n_steps

    def _unpack_state(self, state: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not isinstance(state, dict) or "x" not in state or "p" not in state:
            raise TypeError(
                "state must be a dict with keys 'x' and 'p', got "
                + (f"keys {sorted(state)}" if isinstance(state, dict) else type(state).__name__)
            )
        x, p = state["x"], state["p"]
        if not isinstance(x, torch.Tensor) or not isinstance(p, torch.Tensor):
            raise TypeError("state['x'] and state['p'] must be tensors")
        if x.shape != p.shape:
            raise ConfigurationError(
                f"state['p'] must have the shape of state['x'] {tuple(x.shape)}, got {tuple(p.shape)}"
            )
        return x, p, self._zeros_t(x)

    @classmethod
    def _safe_clamp_(cls, z: torch.Tensor) -> torch.Tensor:
        return z.clamp_(-cls._SAFE_CLAMP, cls._SAFE_CLAMP)

    @classmethod
    def _sanitize_state_(cls, z: torch.Tensor) -> torch.Tensor:
        return z.nan_to_num_(nan=0.0, posinf=cls._SAFE_CLAMP, neginf=-cls._SAFE_CLAMP)

    @classmethod
    def _guard_force(cls, f: torch.Tensor, safe: bool) -> torch.Tensor:
        if not safe:
            return f
        return f.nan_to_num(nan=0.0, posinf=cls._SAFE_CLAMP, neginf=-cls._SAFE_CLAMP).clamp_(
            -cls._SAFE_CLAMP, cls._SAFE_CLAMP
        )

    @classmethod
    def _guard_state(cls, z: torch.Tensor, safe: bool) -> torch.Tensor:
        if not safe:
            return z
        if z.requires_grad:
            return z.nan_to_num(nan=0.0, posinf=cls._SAFE_CLAMP, neginf=-cls._SAFE_CLAMP).clamp(
                -cls._SAFE_CLAMP, cls._SAFE_CLAMP
            )
        return cls._safe_clamp_(cls._sanitize_state_(z))

    @staticmethod
    def _axpy(y: torch.Tensor, a, x: torch.Tensor) -> torch.Tensor:
        """``y + a * x`` for a Python-float or tensor ``a`` (one allocation)."""
        if isinstance(a, float):
            return torch.add(y, x, alpha=a)
        return torch.addcmul(y, x, a)

    @staticmethod
    def _axpy_(y: torch.Tensor, a, x: torch.Tensor) -> torch.Tensor:
        """``y + a * x`` in place on ``y`` (a fresh tensor) when autograd allows it."""
        if y.requires_grad or not _fits(x.shape, y.shape):
            return BaseSymplecticIntegrator._axpy(y, a, x)
        if isinstance(a, float):
            return y.add_(x, alpha=a)
        return y.addcmul_(x, a)

    def _picard(self, fn, z0, n_iter: int, check_every: int, tol: float):
        """Fixed-point iteration ``z <- fn(z)`` from ``z0``; returns ``(z, evaluations)``."""
        z = z0
        for it in range(1, n_iter + 1):
            z_new = fn(z)
            if check_every > 0 and it % check_every == 0 and it < n_iter:
                change = float(_rms_norm(z_new - z))
                z = z_new
                if change <= tol:
                    return z, it
            else:
                z = z_new
        return z, n_iter

    @abstractmethod
    def _step_impl(self, x, p, t, h, ctx, cache, safe: bool):
        """One step on ``(x, p)``; returns ``(x_new, p_new, cache)``."""

    def _run(self, state, step_size, n_steps, ctx, safe: bool) -> dict:
        x, p, t = self._unpack_state(state)
        if step_size is None:
            raise ConfigurationError("step_size must be given, got None")
        h, _ = _prep_step(step_size, x)
        self.nfe = 0
        cache = None
        for _ in range(n_steps):
            x, p, cache = self._step_impl(x, p, t, h, ctx, cache, safe)
        return {"x": x, "p": p}
