r"""A whole Langevin chain of an elementwise analytic energy in one kernel."""

from __future__ import annotations

import math

import torch

from torchebm.core.errors import check_finite_tensor, check_int
from torchebm.cuda._analytic import analytic_spec, eager_grad
from torchebm.cuda._backend import kernels, resolve_backend
from torchebm.cuda._langevin import device_guard, draws_noise, eager_step, launch_args
from torchebm.cuda._validate import (
    check_clamp,
    check_langevin_args,
    compute_dtype,
    eager_generator,
)

__all__ = ["langevin_chain"]


@torch.no_grad()
def langevin_chain(
    x: torch.Tensor,
    energy: torch.nn.Module,
    n_steps: int,
    step_size: float,
    noise_scale: float = 1.0,
    clamp: tuple[float | None, float | None] | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    noise: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    *,
    force: str | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    r"""Run ``n_steps`` Langevin updates of an elementwise analytic energy in one kernel.

    Each step is [`fused_langevin_step`][torchebm.cuda.fused_langevin_step] with the closed-form gradient,

    $$
    x_{k+1} = \operatorname{clamp}\bigl(x_k - \eta\,\nabla E(x_k)
    + \sigma\sqrt{2\eta}\,\varepsilon_k\bigr),
    $$

    but on CUDA the state stays in registers for the whole chain: one read and one write of
    ``x`` in total, and four steps' noise per Philox call. Supported energies:
    [`DoubleWellModel`][torchebm.core.DoubleWellModel], [`HarmonicModel`][torchebm.core.HarmonicModel] and
    [`GaussianModel`][torchebm.core.GaussianModel] with a diagonal covariance (see
    [`supports_energy`][torchebm.cuda.supports_energy]). For any other energy, loop over
    [`fused_langevin_step`][torchebm.cuda.fused_langevin_step] or use ``torchebm.samplers.LangevinDynamics``.
    The step size is constant (schedulers belong to the samplers).

    The eager fallback runs the same maths step by step with ``torch.randn`` noise from
    ``generator``: a fixed generator reproduces each path exactly, and the two paths agree in
    distribution (and to float32 tolerance with supplied ``noise``). Both keep the working state
    in float32 for half-precision inputs and round once at the end.

    Args:
        x: Initial states ``(B, *event_shape)`` (``(B, d)`` for a Gaussian); not modified
            unless passed as ``out``.
        energy: A supported analytic model; its parameters are read at call time.
        n_steps: Number of steps (>= 1).
        step_size: $\eta > 0$.
        noise_scale: $\sigma \ge 0$ (a Python ``0`` draws nothing: the generator is not
            advanced).
        clamp: ``None`` or ``(lo, hi)``, applied after every step.
        generator: Randomness source on ``x``'s device; the kernel path draws one ``int64``
            Philox key from it per call, the eager path ``n_steps`` normal tensors.
        seed: Alternative to ``generator`` (int in ``[0, 2^{63}-1)``).
        noise: Optional noise of shape ``(n_steps, *x.shape)``; nothing is drawn when given.
        out: Optional contiguous output like ``x`` (may be ``x``: in-place chain).
        force: ``None``/``"auto"``, ``"eager"`` or ``"triton"`` (see
            [`fused_langevin_step`][torchebm.cuda.fused_langevin_step]).
        check_finite: Raise [`NonFiniteError`][torchebm.core.errors.NonFiniteError] naming the chains
            that ended with NaN/inf (one host sync at the end; pass ``False`` to skip).

    Returns:
        Final states, shape and dtype of ``x``.

    Raises:
        ValueError: unsupported ``energy`` (the message lists the supported ones), bad
            arguments or shapes, see [`fused_langevin_step`][torchebm.cuda.fused_langevin_step].
        TypeError: unsupported dtype or argument types.
        torchebm.core.errors.NonFiniteError: a chain diverged (with ``check_finite``).

    Example:
        >>> from torchebm.core import HarmonicModel
        >>> g = torch.Generator().manual_seed(0)
        >>> x = langevin_chain(torch.zeros(512, 2), HarmonicModel(k=4.0), 200, 0.01, generator=g)
        >>> bool(abs(x.var() - 0.25) < 0.05)
        True

    References:
        - Roberts, G. O. and Tweedie, R. L. (1996). Exponential convergence of Langevin
          distributions and their discrete approximations. Bernoulli 2(4).
    """
    n_steps = check_int("n_steps", n_steps, minimum=1)
    compiling = torch.compiler.is_compiling()
    x, h, s, generator, seed, out = check_langevin_args(
        x,
        step_size,
        noise_scale,
        noise,
        generator,
        seed,
        out,
        compiling=compiling,
        noise_steps=n_steps,
    )
    bounds = check_clamp(clamp)
    work_dtype = compute_dtype(x.dtype)
    spec = analytic_spec(energy, x, work_dtype)
    noise_coef = s * math.sqrt(2.0 * h)

    if resolve_backend(force, x, compiling) == "triton":
        draw = draws_noise(noise_coef)
        xk, res, noise_k, seed_t = launch_args(x, noise, generator, seed, out, draw=draw)
        with device_guard(x):
            kernels().langevin_chain(
                xk,
                res,
                noise_k,
                seed_t,
                seed,
                spec.kind,
                spec.a,
                spec.b2,
                spec.mu,
                spec.prec,
                n_steps,
                h,
                noise_coef,
                bounds,
            )
    else:
        # the working state stays in the compute dtype for the whole chain, like the
        # kernel's registers, and is rounded to x's dtype once at the end; each step is the
        # one eager Langevin update, in place on the working state
        g = eager_generator(generator, seed, x.device)
        xc = x.to(work_dtype, copy=True)
        for i in range(n_steps):
            e = None if noise is None else noise[i]
            eager_step(xc, eager_grad(spec, xc), h, noise_coef, bounds, e, g, xc)
        res = out.copy_(xc) if out is not None else xc.to(x.dtype)
    if check_finite:
        check_finite_tensor("langevin_chain result", res)
    return res
