r"""One fused overdamped-Langevin (Euler-Maruyama) update, with its eager fallback."""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any, cast

import torch

from torchebm.core import warn_once
from torchebm.cuda._backend import kernels, resolve_backend
from torchebm.cuda._validate import (
    as_dtype,
    check_clamp,
    check_langevin_args,
    compute_dtype,
    draw_seed,
    eager_generator,
    plain_step_args,
)

__all__ = [
    "fused_langevin_step",
    "device_guard",
    "draws_noise",
    "randn_like_state",
    "eager_step",
    "launch_args",
]


def device_guard(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Make ``x``'s CUDA device current while a kernel is launched (Triton uses the current one)."""
    if x.device.type == "cuda":
        return torch.cuda.device(x.device)
    return contextlib.nullcontext()


def randn_like_state(
    x: torch.Tensor, dtype: torch.dtype, generator: torch.Generator | None
) -> torch.Tensor:
    """``torch.randn`` of ``x``'s shape (no ``generator=None`` keyword: under torch.compile with
    dynamic shapes that overload rejects symbolic sizes)."""
    if generator is None:
        return torch.randn(x.shape, device=x.device, dtype=dtype)
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=dtype)


def draws_noise(noise_coef: Any) -> bool:
    """Whether an update of noise coefficient ``noise_coef`` draws noise: not for a Python
    zero (``noise_scale=0``: nothing drawn and the generator not advanced, as in the
    samplers' eager update). A tensor or traced coefficient draws."""
    return not (isinstance(noise_coef, float) and noise_coef == 0.0)


def eager_step(
    x: torch.Tensor,
    grad: torch.Tensor,
    step_size: float,
    noise_coef: float,
    bounds: tuple[float, float] | None,
    noise: torch.Tensor | None,
    generator: torch.Generator | None,
    out: torch.Tensor | None,
) -> torch.Tensor:
    """The eager Langevin update (the fallback of the step kernel and, step by step, of
    the chain kernel): ``clamp((x - step_size * grad) + noise_coef * eps)``."""
    # The reference maths, one rounding per operation in this order:
    #   y = (x - step_size * grad) + noise_coef * eps,  then clamp.
    # Every input is read before ``out`` is written, so ``out`` may alias any of them.
    # With no noise given and a Python zero noise_coef nothing is drawn: y = x - step_size * grad.
    work_dtype = compute_dtype(x.dtype)
    t = torch.mul(as_dtype(grad, work_dtype), step_size)
    e = None
    if noise is not None:
        e = torch.mul(as_dtype(noise, work_dtype), noise_coef)
    elif draws_noise(noise_coef):
        e = randn_like_state(x, work_dtype, generator)
        e.mul_(noise_coef)
    target = out if (out is not None and out.dtype == work_dtype) else t
    torch.sub(as_dtype(x, work_dtype), t, out=target)
    if e is not None:
        target.add_(e)
    if bounds is not None:
        target.clamp_(bounds[0], bounds[1])
    if out is None:
        return as_dtype(target, x.dtype)
    return out if target is out else out.copy_(target)


def launch_args(
    x: torch.Tensor,
    noise: torch.Tensor | None,
    generator: torch.Generator | None,
    seed: int | None,
    out: torch.Tensor | None,
    draw: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(x, out, noise, seed tensor)`` as the Langevin kernels take them: contiguous, the
    output allocated when not given, and a Philox key drawn unless noise or a seed is given
    or ``draw`` is false (no noise: the kernel's normals, of key 0, are multiplied by 0)."""
    xk = x.contiguous()
    res = out if out is not None else torch.empty_like(xk)
    drawn = draw and noise is None and seed is None
    seed_t = draw_seed(generator, x.device) if drawn else None
    return xk, res, (noise.contiguous() if noise is not None else None), seed_t


def fused_langevin_step(
    x: torch.Tensor,
    grad: torch.Tensor,
    step_size: float,
    noise_scale: float = 1.0,
    clamp: tuple[float | None, float | None] | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    out: torch.Tensor | None = None,
    *,
    force: str | None = None,
) -> torch.Tensor:
    r"""One overdamped Langevin update, fused into a single kernel on CUDA.

    $$
    x' = \operatorname{clamp}\bigl(x - \eta\,\nabla E(x) + \sigma\sqrt{2\eta}\,\varepsilon,
    \ \mathrm{lo},\ \mathrm{hi}\bigr), \qquad \varepsilon \sim \mathcal N(0, I),
    $$

    i.e. the Euler-Maruyama step of $dX = -\nabla E\,dt + \sigma\sqrt2\,dW$ that
    ``LangevinDynamics`` takes ($\sigma = 1$ samples $p \propto e^{-E}$).

    On a CUDA tensor (with Triton importable) one kernel reads ``x`` and ``grad``, draws
    $\varepsilon$ in registers with counter-based Philox, applies the update and the clamp
    and writes the result: 12 bytes of memory traffic per float32 element, against about 50
    for the six eager kernels. The
    Philox key is one ``int64`` drawn from ``generator`` per call (``torch.randint``, on the
    device, no host sync), so the generator advances deterministically and a fixed generator
    seed gives the same chain on the same GPU. Elsewhere the eager fallback computes the same
    expression with ``torch.randn(..., generator=generator)`` noise; with supplied ``noise`` both
    paths compute the same value (float32 tolerance on GPU, identical in the CPU fallback).

    Half-precision inputs (``float16``, ``bfloat16``) are computed in float32 and rounded once.
    The call is not differentiable (it runs under ``torch.no_grad()``).

    Args:
        x: State, shape ``(B, *event_shape)``; float32, float64, float16 or bfloat16.
        grad: $\nabla E(x)$, same shape, dtype and device as ``x``.
        step_size: $\eta > 0$.
        noise_scale: $\sigma \ge 0$ multiplying the $\sqrt{2\eta}$ noise. A Python ``0``
            draws nothing (``generator`` is not advanced): the update is $x - \eta\nabla E$.
        clamp: ``None`` or ``(lo, hi)`` with ``lo < hi``; a bound may be ``None`` (one-sided).
        noise: Optional $\varepsilon$ of the shape of ``x`` (any supported float dtype);
            when given nothing is drawn and ``generator`` is not advanced.
        generator: Source of randomness (on ``x``'s device). ``None`` uses the global RNG.
        seed: Alternative to ``generator``: an int in ``[0, 2^{63}-1)`` used directly as the
            Philox key (eager path: seeds a fresh ``torch.Generator``).
        out: Optional contiguous output like ``x``; may be ``x`` itself for an in-place update.
        force: ``None``/``"auto"`` (kernel on CUDA, eager elsewhere), ``"eager"`` or ``"triton"``.

    Returns:
        The updated state, shape and dtype of ``x`` (``out`` when given).

    Raises:
        TypeError: a tensor has an unsupported dtype, or an argument has the wrong type.
        ValueError: shapes or devices differ, bad ``step_size``/``noise_scale``/``clamp``,
            ``seed`` together with ``generator`` or ``noise``, non-contiguous ``out``,
            ``force="triton"`` without CUDA.
        ImportError: ``force="triton"`` without Triton (the message gives the install command).

    Example:
        >>> x = torch.zeros(4, 2)
        >>> g = torch.Generator().manual_seed(0)
        >>> fused_langevin_step(x, x.clone(), step_size=0.01, generator=g).shape
        torch.Size([4, 2])

    References:
        - Roberts, G. O. and Tweedie, R. L. (1996). Exponential convergence of Langevin
          distributions and their discrete approximations. Bernoulli 2(4).
        - Salmon, J. K. et al. (2011). Parallel random numbers: as easy as 1, 2, 3. SC'11
          (the Philox generator).
    """
    int_seed = isinstance(generator, numbers.Integral) and not isinstance(generator, bool)
    # a tensor that can be an `out` (floating, x's shape); another is a bad seed, named below
    out_in_seed = (
        isinstance(seed, torch.Tensor) and seed.is_floating_point() and seed.shape == x.shape
    )
    if int_seed or (generator is None and out_in_seed):
        # torchebm 0.8.9's positions (..., noise, seed, out): its seed (an int or None) lands
        # in generator and a positional out in seed
        warn_once(
            "fused_langevin_step.seed",
            "fused_langevin_step(x, grad, step_size, noise_scale, clamp, noise, seed, out) is "
            "torchebm 0.8.9's order; generator now comes before seed: pass seed= and out= by "
            "keyword",
        )
        if isinstance(seed, torch.Tensor):
            if out is not None:
                raise TypeError("fused_langevin_step got out twice (by position and keyword)")
            out, seed = seed, None
        if seed is not None:
            raise TypeError(f"fused_langevin_step got seed twice, {generator!r} and {seed!r}")
        # 0.8.9 ignored its seed when noise was given
        legacy_seed, generator = generator, None
        seed = None if noise is not None or not int_seed else int(cast(int, legacy_seed))
    compiling = torch.compiler.is_compiling()
    if (
        noise is None
        and seed is None
        and out is None
        and plain_step_args(x, grad, step_size, noise_scale, generator)
    ):  # the samplers' call: every check below holds, the clamp is still parsed
        h, s = step_size, noise_scale
    else:
        x, h, s, generator, seed, out = check_langevin_args(
            x, step_size, noise_scale, noise, generator, seed, out, compiling=compiling, grad=grad
        )
    bounds = check_clamp(clamp)
    noise_coef = s * math.sqrt(2.0 * h)
    # not differentiable: no graph is recorded (samplers call it with grad mode off already)
    with torch.no_grad() if torch.is_grad_enabled() else contextlib.nullcontext():
        if resolve_backend(force, x, compiling) != "triton":
            g = eager_generator(generator, seed, x.device)
            return eager_step(x, grad, h, noise_coef, bounds, noise, g, out)
        xk, res, noise_k, seed_t = launch_args(
            x, noise, generator, seed, out, draw=draws_noise(noise_coef)
        )
        with device_guard(x):
            kernels().langevin_step(
                xk, grad.contiguous(), noise_k, res, seed_t, seed, h, noise_coef, bounds
            )
        return res
