r"""Input validation shared by every public function of `torchebm.cuda`.

Both paths (Triton kernel and eager fallback) run the same checks, so code that works on CPU
does not start failing when it meets a GPU.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from torchebm.core.errors import (
    ConfigurationError,
    ShapeError,
    check_clamp,
    check_generator,
    check_int,
    check_non_negative,
    check_positive,
    check_tensor,
)

__all__ = [
    "SUPPORTED_DTYPES",
    "compute_dtype",
    "as_dtype",
    "check_state",
    "check_like",
    "check_out",
    "check_clamp",
    "check_generator",
    "check_seed",
    "draw_seed",
    "eager_generator",
    "check_scalar",
    "plain_step_args",
    "LangevinArgs",
    "check_langevin_args",
]

#: dtypes every kernel and fallback accepts; half types are computed in float32
SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_DTYPE_NAMES = "float32, float64, float16 or bfloat16"
#: seeds are drawn in [0, SEED_HIGH) and fed to Philox as 64-bit keys
SEED_HIGH = 2**63 - 1


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Arithmetic dtype of the kernels and fallbacks: float64 stays, everything else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t.to(dtype)`` without the dispatcher round trip when it is already ``dtype``."""
    return t if t.dtype == dtype else t.to(dtype)


def _check_dtype(name: str, t: torch.Tensor) -> None:
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name} must have dtype {_DTYPE_NAMES}, got {t.dtype}")


def check_state(name: str, x: Any) -> torch.Tensor:
    """A batch-first floating tensor ``(B, *event_shape)`` of a supported dtype."""
    if isinstance(x, torch.Tensor):  # the supported dtypes named before check_tensor's "real"
        _check_dtype(name, x)
    return check_tensor(name, x, min_ndim=1)


def check_like(
    name: str, t: Any, x: torch.Tensor, *, same_dtype: bool = True, shape: tuple | None = None
) -> torch.Tensor:
    """``t`` is a tensor on ``x``'s device, with ``x``'s shape (or ``shape``) and dtype."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    _check_dtype(name, t)
    if same_dtype and t.dtype != x.dtype:
        raise TypeError(f"{name} must have the dtype of x ({x.dtype}), got {t.dtype}")
    if t.device != x.device:
        raise ConfigurationError(f"{name} must be on the device of x ({x.device}), got {t.device}")
    want = tuple(x.shape) if shape is None else tuple(shape)
    if tuple(t.shape) != want:
        raise ShapeError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    return t


def check_out(out: Any, x: torch.Tensor) -> torch.Tensor | None:
    """``out`` is ``None`` or a contiguous tensor like ``x`` (it may alias ``x``)."""
    if out is None:
        return None
    check_like("out", out, x)
    if not out.is_contiguous():
        raise ConfigurationError(
            f"out must be contiguous (the kernels write it in place), got strides {out.stride()}"
        )
    return out


def check_scalar(name: str, value: Any, *, positive: bool, compiling: bool = False) -> Any:
    """``check_positive``/``check_non_negative``, except while ``torch.compile`` traces the call.

    Under ``torch.compile(dynamic=True)`` Python floats arrive as symbolic ``SymFloat`` values,
    whose comparisons would break the graph; they are validated by the eager call instead.
    Pass ``compiling=torch.compiler.is_compiling()`` (asked once per call by the caller).
    """
    if compiling:
        return value
    return check_positive(name, value) if positive else check_non_negative(name, value)


def check_seed(seed: Any, generator: torch.Generator | None) -> int | None:
    """``None`` or an int in ``[0, 2**63 - 1)``; passing it together with a generator is an error."""
    if seed is None:
        return None
    seed = check_int("seed", seed, minimum=0)
    if seed >= SEED_HIGH:
        raise ConfigurationError(f"seed must be < 2**63 - 1, got {seed}")
    if generator is not None:
        raise ConfigurationError(
            "pass either seed or generator, not both (the kernel seed is drawn from the generator)"
        )
    return seed


def draw_seed(generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """One ``int64`` draw from ``generator`` (or the global RNG), kept on ``device``.

    The kernel reads the seed from device memory, so no host synchronisation is needed and
    the draw is captured correctly inside a CUDA graph.
    """
    return torch.randint(0, SEED_HIGH, (1,), generator=generator, device=device, dtype=torch.int64)


def eager_generator(
    generator: torch.Generator | None, seed: int | None, device: torch.device
) -> torch.Generator | None:
    """The generator the eager path draws from: ``generator``, a fresh one seeded by ``seed``, or None."""
    if seed is None:
        return generator
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


_SUPPORTED = frozenset(SUPPORTED_DTYPES)


def plain_step_args(x: Any, grad: Any, step_size: Any, noise_scale: Any, generator: Any) -> bool:
    """Whether a step call's tensors and scalars are the common, valid kind, so the detailed
    checks (which name the offending argument) can be skipped.

    ``True`` only when every one of those checks would pass: plain tensors of a supported
    dtype, ``grad`` like ``x``, a non-empty batch, a finite float ``step_size > 0``, a finite
    float ``noise_scale >= 0`` and no generator or one on ``x``'s device. Anything else,
    valid or not, goes through the detailed checks.
    """
    return (
        type(x) is torch.Tensor
        and type(grad) is torch.Tensor
        and x.dtype in _SUPPORTED
        and grad.dtype == x.dtype
        and x.ndim >= 1
        and x.shape[0] > 0
        and grad.shape == x.shape
        and grad.device == x.device
        and type(step_size) is float
        and 0.0 < step_size < math.inf
        and type(noise_scale) is float
        and 0.0 <= noise_scale < math.inf
        and (
            generator is None
            or (type(generator) is torch.Generator and generator.device == x.device)
        )
    )


_ABSENT: Any = object()


class LangevinArgs(NamedTuple):
    """The checked arguments of a Langevin update (one step or a whole chain)."""

    x: torch.Tensor
    step_size: Any
    noise_scale: Any
    generator: torch.Generator | None
    seed: int | None
    out: torch.Tensor | None


def check_langevin_args(
    x: Any,
    step_size: Any,
    noise_scale: Any,
    noise: Any,
    generator: Any,
    seed: Any,
    out: Any,
    *,
    compiling: bool,
    grad: Any = _ABSENT,
    noise_steps: int | None = None,
) -> LangevinArgs:
    """Check what `fused_langevin_step` and `langevin_chain` share: the state (and ``grad``
    when given), ``step_size > 0``, ``noise_scale >= 0``, ``generator`` or ``seed``,
    ``noise`` like ``x`` (``(noise_steps, *x.shape)`` for a chain; not with ``seed``) and
    ``out``."""
    x = check_state("x", x)
    if grad is not _ABSENT:  # the step's gradient (the chain computes its own)
        check_like("grad", grad, x)
    h = check_scalar("step_size", step_size, positive=True, compiling=compiling)
    s = check_scalar("noise_scale", noise_scale, positive=False, compiling=compiling)
    generator = check_generator(generator, x.device)
    seed = check_seed(seed, generator)
    if noise is not None:
        shape = None if noise_steps is None else (noise_steps, *x.shape)
        check_like("noise", noise, x, same_dtype=False, shape=shape)
        if seed is not None:
            raise ConfigurationError("pass either noise or seed, not both")
    return LangevinArgs(x, h, s, generator, seed, check_out(out, x))
