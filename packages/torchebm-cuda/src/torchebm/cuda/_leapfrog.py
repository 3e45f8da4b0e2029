r"""Fused leapfrog (Stormer-Verlet) trajectories for Hamiltonian Monte Carlo."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch

from torchebm.core import BaseModel
from torchebm.core.errors import (
    _CHECKED,
    ConfigurationError,
    ShapeError,
    check_int,
    check_positive,
)
from torchebm.cuda._analytic import AnalyticSpec, eager_grad, maybe_analytic_spec
from torchebm.cuda._backend import kernels, resolve_backend
from torchebm.cuda._langevin import device_guard
from torchebm.cuda._validate import check_like, check_state, compute_dtype

__all__ = ["fused_leapfrog_step"]

MINV_NONE, MINV_SCALAR, MINV_EVENT, MINV_FULL = 0, 1, 2, 3


def _inverse_mass(
    mass: Any, x: torch.Tensor, work_dtype: torch.dtype
) -> tuple[torch.Tensor | None, float, int]:
    """``(minv tensor or None, minv scalar, layout code)`` for the kernels and fallbacks."""
    if mass is None:
        return None, 1.0, MINV_NONE
    if isinstance(mass, numbers.Real) and not isinstance(mass, bool):
        return None, 1.0 / check_positive("mass", mass), MINV_SCALAR
    if not isinstance(mass, torch.Tensor):
        raise TypeError(
            f"mass must be None, a positive float or a tensor, got {type(mass).__name__}"
        )
    if not mass.is_floating_point():
        raise TypeError(f"mass must have a floating-point dtype, got {mass.dtype}")
    if mass.device != x.device:
        raise ConfigurationError(f"mass must be on the device of x ({x.device}), got {mass.device}")
    # one host read at a direct call; none inside a sampler's loop, which checked its mass
    if not _CHECKED.get() and not bool(((mass > 0) & (mass < math.inf)).all()):
        bad = mass[~((mass > 0) & (mass < math.inf))].flatten()[:8].tolist()
        raise ConfigurationError(
            f"mass must hold positive finite values, got {bad}{_matrix(mass, x)}"
        )
    event = tuple(x.shape[1:])
    m = mass
    while m.ndim > len(event) and m.shape[0] == 1:
        m = m.reshape(m.shape[1:])
    minv = torch.reciprocal(m.to(work_dtype))
    try:
        if m.ndim <= len(event) and torch.broadcast_shapes(m.shape, event) == event:
            return minv.expand(event).contiguous(), 1.0, MINV_EVENT
        if torch.broadcast_shapes(m.shape, x.shape) == x.shape:
            return minv.expand(x.shape).contiguous(), 1.0, MINV_FULL
    except RuntimeError:
        pass
    raise ShapeError(
        f"mass must broadcast to the event shape {event} or to x's shape {tuple(x.shape)}, "
        f"got shape {tuple(mass.shape)}{_matrix(mass, x)}"
    )


def _matrix(mass: torch.Tensor, x: torch.Tensor) -> str:
    """A hint for a square ``(d, d)`` mass of chains ``(B, d)``: the kernels take a diagonal."""
    if mass.ndim == 2 and mass.shape[0] == mass.shape[1] == x.shape[-1] > 1:
        return (
            "; a dense mass matrix is not accepted (the kernels take a scalar or diagonal mass: "
            "pass mass=M.diagonal(); HamiltonianMonteCarlo takes a dense mass and runs it "
            "eagerly)"
        )
    return ""


# --------------------------------------------------------------------------- eager
def _kick(p: torch.Tensor, g: torch.Tensor, kick: float, work_dtype: torch.dtype) -> None:
    """In place ``p <- p - kick * g`` (computed in ``work_dtype``, stored in p's dtype)."""
    if p.dtype == work_dtype:
        p.sub_(torch.mul(g, kick))
    else:
        p.copy_(p.to(work_dtype).sub_(torch.mul(g.to(work_dtype), kick)))


def _drift(
    x: torch.Tensor, p: torch.Tensor, h: float, minv: torch.Tensor | None, minv_s: float,
    mode: int, work_dtype: torch.dtype,
) -> None:  # fmt: skip
    """In place ``x <- x + h * (p * minv)`` (computed in ``work_dtype``, stored in x's dtype)."""
    pc = p.to(work_dtype)
    if mode == MINV_NONE:
        t = torch.mul(pc, h)
    else:
        t = torch.mul(pc, minv if minv is not None else minv_s).mul_(h)
    if x.dtype == work_dtype:
        x.add_(t)
    else:
        x.copy_(x.to(work_dtype).add_(t))


def _grad_of(grad_fn: Callable, x: torch.Tensor) -> torch.Tensor:
    g = grad_fn(x)
    check_like("grad_fn(x)", g, x)
    return g.detach()


def _eager_general(x, p, grad_fn, h, n_steps, minv, minv_s, mode, grad):
    work_dtype = compute_dtype(x.dtype)
    xw = x.detach().clone(memory_format=torch.contiguous_format)
    pw = p.detach().clone(memory_format=torch.contiguous_format)
    g = grad if grad is not None else _grad_of(grad_fn, xw)
    with torch.no_grad():
        _kick(pw, g, 0.5 * h, work_dtype)
        _drift(xw, pw, h, minv, minv_s, mode, work_dtype)
    for _ in range(n_steps - 1):
        g = _grad_of(grad_fn, xw)
        with torch.no_grad():
            _kick(pw, g, h, work_dtype)
            _drift(xw, pw, h, minv, minv_s, mode, work_dtype)
    g = _grad_of(grad_fn, xw)
    with torch.no_grad():
        _kick(pw, g, 0.5 * h, work_dtype)
    return xw, pw, g


def _triton_general(x, p, grad_fn, h, n_steps, minv, minv_s, mode, grad):
    k = kernels()
    xw = x.detach().clone(memory_format=torch.contiguous_format)
    pw = p.detach().clone(memory_format=torch.contiguous_format)
    g = grad if grad is not None else _grad_of(grad_fn, xw)
    for i in range(n_steps):
        with torch.no_grad(), device_guard(x):
            k.kick_drift(
                xw, pw, g.contiguous(), minv, minv_s, mode, 0.5 * h if i == 0 else h, h, True
            )
        g = _grad_of(grad_fn, xw)
    with torch.no_grad(), device_guard(x):
        k.kick_drift(xw, pw, g.contiguous(), minv, minv_s, mode, 0.5 * h, h, False)
    return xw, pw, g


@torch.no_grad()
def _eager_analytic(x, p, spec: AnalyticSpec, h, n_steps, minv, minv_s, mode, grad):
    work_dtype = compute_dtype(x.dtype)
    m = minv if minv is not None else minv_s
    xc = x.to(work_dtype, copy=True)
    pc = p.to(work_dtype, copy=True)
    g = grad.to(work_dtype) if grad is not None else eager_grad(spec, xc)
    hh = 0.5 * h
    pc.sub_(torch.mul(g, hh))
    for i in range(n_steps):
        t = torch.mul(pc, h) if mode == MINV_NONE else torch.mul(pc, m).mul_(h)
        xc.add_(t)
        g = eager_grad(spec, xc)
        pc.sub_(torch.mul(g, h if i < n_steps - 1 else hh))
    return xc.to(x.dtype), pc.to(x.dtype), g.to(x.dtype)


def fused_leapfrog_step(
    x: torch.Tensor,
    p: torch.Tensor,
    grad_fn: Callable[[torch.Tensor], torch.Tensor] | BaseModel,
    step_size: float,
    n_steps: int = 1,
    mass: float | torch.Tensor | None = None,
    grad: torch.Tensor | None = None,
    *,
    force: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""A leapfrog trajectory of ``n_steps`` steps (the proposal of one HMC iteration).

    With $H(x, p) = E(x) + \tfrac12 p^\top M^{-1} p$ and diagonal mass $M$:

    $$
    \begin{aligned}
    p &\leftarrow p - \tfrac{\eta}{2}\nabla E(x) \\
    \text{repeat } L \text{ times:}\quad x &\leftarrow x + \eta\,(M^{-1} p),\quad
    p \leftarrow p - \eta\,\nabla E(x) \quad(\text{the last kick is } \tfrac{\eta}{2})
    \end{aligned}
    $$

    (velocity Verlet with consecutive half kicks merged: ``L`` gradient evaluations, plus one
    at the start unless ``grad`` is given). The accept/reject test is the caller's: it needs
    the energies, which this function does not compute.

    ``grad_fn`` is either

    * a callable ``x -> grad`` (e.g. ``model.gradient``) or any ``BaseModel`` (its
      ``gradient`` is used): on CUDA the kick and the drift of each step are one fused kernel
      (instead of five eager ones) around the user's gradient call; or
    * a supported elementwise analytic model ([`supports_energy`][torchebm.cuda.supports_energy]): on CUDA
      the whole trajectory runs in one kernel with the state in registers.

    The eager fallback computes the same expressions in the same order (``M^{-1}`` is
    precomputed as a reciprocal and multiplied, on both paths). Half-precision states are
    computed in float32; in the callable form they are stored in their own dtype between
    gradient calls, in the analytic form only at the end. Inputs are never modified.

    Args:
        x: Positions ``(B, *event_shape)``; float32, float64, float16 or bfloat16.
        p: Momenta, same shape, dtype and device.
        grad_fn: Gradient of the potential energy, see above. It is called in the caller's
            grad mode (``BaseModel.gradient`` enables autograd itself).
        step_size: $\eta > 0$.
        n_steps: Number of leapfrog steps $L \ge 1$.
        mass: Diagonal mass: ``None`` (identity), a positive float, or a tensor broadcastable
            to the event shape (one mass per coordinate) or to ``x``'s shape (one per
            element), with positive finite values (checked with one host read, skipped inside
            a sampler's loop). The shape alone decides, and a dense mass matrix is never
            taken: with chains ``(B, D)`` and ``B == D`` a positive ``(D, D)`` tensor is one
            mass per element of ``x``, not a matrix (`HamiltonianMonteCarlo` reads a
            ``(D, D)`` mass of ``(B, D)`` chains as a dense matrix whatever ``B``, and runs
            it eagerly: use it for a dense mass, or pass the diagonal ``M.diagonal()`` here).
        grad: Optional $\nabla E(x)$ at the initial ``x`` (e.g. the ``grad`` returned by
            the previous call), saving one gradient evaluation.
        force: ``None``/``"auto"``, ``"eager"`` or ``"triton"`` (see
            [`fused_langevin_step`][torchebm.cuda.fused_langevin_step]).

    Returns:
        ``(x_new, p_new, grad_new)``: final positions, final momenta and
        $\nabla E(x_{\text{new}})$, each with the shape and dtype of ``x``.

    Raises:
        TypeError: unsupported dtypes, ``grad_fn`` not callable, bad ``mass`` type.
        ValueError: shape/device mismatches, bad ``step_size``/``n_steps``/``mass``.

    Example:
        >>> from torchebm.core import HarmonicModel
        >>> x, p = torch.ones(3, 2), torch.zeros(3, 2)
        >>> x1, p1, g1 = fused_leapfrog_step(x, p, HarmonicModel(), step_size=0.1, n_steps=10)
        >>> bool(torch.allclose(0.5 * (x1**2 + p1**2).sum(-1), torch.full((3,), 1.0), atol=1e-2))
        True

    References:
        - Duane, S., Kennedy, A. D., Pendleton, B. J. and Roweth, D. (1987). Hybrid Monte
          Carlo. Physics Letters B 195(2).
        - Neal, R. M. (2011). MCMC using Hamiltonian dynamics. Handbook of Markov Chain
          Monte Carlo, chapter 5.
    """
    x = check_state("x", x)
    p = check_like("p", p, x)
    h = check_positive("step_size", step_size)
    n_steps = check_int("n_steps", n_steps, minimum=1)
    if grad is not None:
        check_like("grad", grad, x)
    work_dtype = compute_dtype(x.dtype)
    minv, minv_s, mode = _inverse_mass(mass, x, work_dtype)
    backend = resolve_backend(force, x)

    spec = maybe_analytic_spec(grad_fn, x, work_dtype)
    if spec is not None:
        if backend == "triton":
            with torch.no_grad(), device_guard(x):
                xk, pk = x.contiguous(), p.contiguous()
                x_out, p_out, g_out = (torch.empty_like(xk) for _ in range(3))
                kernels().leapfrog_analytic(
                    xk, pk, grad.contiguous() if grad is not None else None,
                    x_out, p_out, g_out, minv, minv_s, mode,
                    spec.kind, spec.a, spec.b2, spec.mu, spec.prec, n_steps, h,
                )  # fmt: skip
            return x_out, p_out, g_out
        return _eager_analytic(x, p, spec, h, n_steps, minv, minv_s, mode, grad)

    if isinstance(grad_fn, BaseModel):
        grad_fn = grad_fn.gradient
    if not callable(grad_fn):
        raise TypeError(
            f"grad_fn must be a callable x -> grad or a BaseModel, got {type(grad_fn).__name__}"
        )
    run = _triton_general if backend == "triton" else _eager_general
    return run(x, p, grad_fn, h, n_steps, minv, minv_s, mode, grad)
