"""Shape and state helpers shared by the Runge-Kutta, symplectic and leapfrog integrators
(and `autograd_ready`/`autograd_grad`/`own_gradient`, shared with the samplers, losses and flow
objectives)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import torch

from torchebm.core._module import warn_user
from torchebm.core.errors import ShapeError, check_tensor

__all__ = [
    "autograd_grad",
    "autograd_ready",
    "eager_under_compile",
    "fits",
    "fixed_point",
    "has_implicit_stage",
    "own_gradient",
    "rms_norm",
    "rms_rows",
    "rows_close",
    "solver_record",
    "state_x",
    "tolerance",
]

_F = TypeVar("_F", bound=Callable[..., Any])

#: Floor of a per-row tolerance, in units of the dtype's machine epsilon.
_TOL_FLOOR_ULPS = 64


def fits(shape: Sequence[int], target: Sequence[int]) -> bool:
    """Whether ``shape`` broadcasts against ``target`` without enlarging it.

    Plain Python on the sizes: ``torch.broadcast_shapes`` costs tens of microseconds per
    call (it runs through the symbolic-shape machinery), far more than the update it guards.
    """
    if len(shape) > len(target):
        return False
    return all(a == b or a == 1 for a, b in zip(reversed(shape), reversed(target)))


def has_implicit_stage(tableau_a: Sequence[Sequence[float]]) -> bool:
    r"""Whether a Butcher matrix (row ``i``: $a_{i0}, \dots$, optionally the diagonal
    $a_{ii}$) has a stage with a non-zero diagonal coefficient, solved implicitly."""
    return any(len(row) > i and row[i] != 0.0 for i, row in enumerate(tableau_a))


def rms_norm(z: torch.Tensor) -> torch.Tensor:
    """Root mean square of every entry of ``z`` (a 0-d tensor), in float32 at least: the
    squares of a float16 ratio above 256 overflow (an infinite norm made the adaptive step
    NaN)."""
    return z.to(torch.promote_types(z.dtype, torch.float32)).square().mean().sqrt()


def state_x(state: Any) -> torch.Tensor:
    """``state["x"]``, checked to be a floating-point tensor in a dict."""
    if not isinstance(state, dict) or "x" not in state:
        raise TypeError(
            f"state must be a dict with key 'x', got {type(state).__name__}"
            + (f" with keys {sorted(state)}" if isinstance(state, dict) else "")
        )
    # a real floating dtype: an integer, bool or complex state failed deep in the step maths
    return batched(check_tensor("state['x']", state["x"], floating=True, non_empty=False))


def batched(x: torch.Tensor) -> torch.Tensor:
    """``x`` if it has a batch dimension, else `ShapeError` (a 0-d state failed with an
    ``IndexError`` deep in a step)."""
    if x.ndim == 0:
        raise ShapeError(
            "state['x'] must be (B, *event_shape), got a 0-d tensor; use x.reshape(1, 1)"
        )
    return x


def tolerance(tol: float, dtype: torch.dtype) -> float:
    """``tol`` floored at 64 machine epsilons of ``dtype`` (a tolerance under the dtype's
    resolution would fail rows that are as close as the dtype can say)."""
    return max(float(tol), _TOL_FLOOR_ULPS * torch.finfo(dtype).eps)


def rms_rows(v: torch.Tensor) -> torch.Tensor:
    """``(B,)`` root mean square of each row of a ``(B, *event_shape)`` tensor (no graph)."""
    return v.detach().reshape(v.shape[0], -1).square().mean(1).sqrt()


def rows_close(
    a: torch.Tensor, b: torch.Tensor, tol: float, scale: torch.Tensor | None = None
) -> torch.Tensor:
    r"""``(B,)`` bool per row of ``(B, *event_shape)`` tensors: $\operatorname{rms}(a - b) \le
    \tau \max(1, s)$, $\tau$ = `tolerance` ``(tol, a.dtype)`` (relative above 1, absolute
    below; a NaN/inf row fails), $s$ = ``scale`` ``(B,)`` (default $\operatorname{rms}(b)$).
    No autograd graph, no host sync."""
    with torch.no_grad():
        s = rms_rows(b) if scale is None else scale
        return rms_rows(a - b) <= tolerance(tol, a.dtype) * s.clamp(min=1.0)


def fixed_point(
    fn: Callable[[torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    n_iter: int,
    check_every: int,
    tol: float,
) -> tuple[torch.Tensor, int, torch.Tensor]:
    r"""Picard iteration $z \leftarrow \text{fn}(z)$ from `z0` `(B, *event_shape)`, the
    implicit solve of every integrator (generalised leapfrog, implicit Runge-Kutta stages).

    Returns `(z, evaluations, converged)`: `converged` `(B,)` bool is False for the rows
    (chains) whose last iteration changed them by more than the tolerance (`rows_close`;
    all False after no iteration: nothing to compare); measuring this costs no evaluation
    of `fn` and no host sync. The caller combines the solves of its call and stores the
    result in its `solver_converged` at the end of the call (a nested or concurrent call
    has its own). Every `check_every` iterations (`0` = never) the loop stops early once
    every row converged (one host sync per check).
    """
    if n_iter == 0:
        return z0, 0, torch.zeros(z0.shape[0], dtype=torch.bool, device=z0.device)
    z, z_prev, used = z0, z0, n_iter
    for it in range(1, n_iter + 1):
        z_prev, z = z, fn(z)
        if check_every > 0 and it % check_every == 0 and it < n_iter:
            if bool(rows_close(z_prev, z, tol).all()):
                used = it
                break
    return z, used, rows_close(z_prev, z, tol)


class _SolverRecord:
    """Convergence of the implicit solves of an integrator's last call (``converged``:
    `(B,)` bool or ``None``): a plain object, so that a call stores it without going
    through `nn.Module.__setattr__`."""

    __slots__ = ("converged",)

    def __init__(self) -> None:
        self.converged: torch.Tensor | None = None


def solver_record(integrator: Any, create: bool = False) -> _SolverRecord | None:
    """``integrator``'s `_SolverRecord`; one unpickled from a version that had none has
    ``None`` (``create``: a new record, stored)."""
    record = vars(integrator).get("_solver")
    if record is None and create:
        record = integrator._solver = _SolverRecord()
    return record


def warn_unconverged(
    owner: Any,
    converged: torch.Tensor,
    states: Sequence[torch.Tensor],
    solves: str,
    field: str,
    advice: str,
) -> None:
    """One ``RuntimeWarning`` from ``owner.integrate`` when the implicit ``solves`` of some
    chains did not converge (``converged`` `(B,)`): how many, how many of them hold NaN/inf
    in ``states`` (a NaN/inf ``field`` or state: no iteration fixes those), then ``advice``.
    One host read when all did."""
    failed = ~converged
    if not bool(failed.any()):
        return
    rows = torch.cat([s.reshape(failed.shape[0], -1) for s in states], 1)  # a (B,) state too
    bad = int((~torch.isfinite(rows)).any(1).sum())
    nan = f", {bad} of them non-finite (a NaN/inf {field} or state)" if bad else ""
    warn_user(
        f"{type(owner).__name__}.integrate: the {solves} did not converge in "
        f"{int(failed.sum())} of {failed.numel()} chains{nan}{advice}",
        RuntimeWarning,
    )


def autograd_ready(value: Any) -> Any:
    """``value`` (a tensor, a dict of conditioning or a tuple of those) usable by autograd
    under ``torch.inference_mode()``: an inference tensor is replaced by a normal copy (autograd
    cannot save one, e.g. the labels an ``nn.Embedding`` reads); anything else is unchanged.

    Example:
        >>> with torch.inference_mode():
        ...     autograd_ready({"y": torch.arange(3)})["y"].is_inference()
        False
    """
    if isinstance(value, dict):
        return {k: autograd_ready(v) for k, v in value.items()}
    if isinstance(value, tuple):  # a NamedTuple keeps its type and fields
        items = [autograd_ready(v) for v in value]
        return cast(Any, type(value))._make(items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, torch.Tensor) and value.is_inference():
        with torch.inference_mode(False):
            return value.clone()
    return value


def eager_under_compile(fn: _F) -> _F:
    """``fn``, or while ``torch.compile`` traces the caller ``torch.compiler.disable(fn)``: one
    cached graph break instead of code that dynamo would trace again at every call (host reads,
    ``torch.autograd.grad``). Dynamo is not imported when nothing is compiled (it takes
    seconds), so the decision is made at each call, not once at import. torch's flag is
    process-wide (set under ``torch.export`` and, while dynamo compiles, in every thread):
    eager code then calls ``fn`` through the wrapper, which changes nothing but the cost."""
    return cast(_F, torch.compiler.disable(fn)) if torch.compiler.is_compiling() else fn


def autograd_grad(
    outputs: Any, inputs: Any, grad_outputs: Any = None, **kwargs: Any
) -> tuple[torch.Tensor, ...]:
    """``torch.autograd.grad(outputs, inputs, grad_outputs, **kwargs)``, eager under
    ``torch.compile`` (`eager_under_compile`).

    Dynamo cannot trace ``torch.autograd.grad``, and a frame that calls it directly is traced
    again on every call (torch 2.15: a compiled training step around a denoising score-matching
    loss took about 1,000 times its eager time). The samplers, losses and flow objectives take
    their gradients in x through it (core's `BaseModel.gradient` calls torch directly).
    """
    grad = eager_under_compile(torch.autograd.grad)
    return grad(outputs, inputs, grad_outputs, **kwargs)


def own_gradient(model: Any) -> Callable[..., torch.Tensor] | None:
    r"""The $\nabla_x E$ that ``model`` provides itself (its callable ``gradient``), else
    ``None`` (the caller differentiates the energy with autograd). Call it through
    `call_own_gradient`.

    A ``DistributedDataParallel`` wrapper has no ``gradient``: its module's is returned (as
    `BaseSampler.model_gradient` does; DDP's forward is for training, and an autograd
    gradient through it lost a closed-form or explicit one). ``DataParallel`` is not
    unwrapped: its forward splits the batch over the devices on purpose.

    Example:
        >>> own_gradient(torch.nn.Linear(2, 1)) is None
        True
    """
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    grad = getattr(model, "gradient", None)
    return grad if callable(grad) else None


def call_own_gradient(grad: Callable[..., Any], x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """``grad(x, ...)``, a model's own gradient (from `own_gradient`), as when called directly:
    in grad mode and outside inference mode (an inference ``x`` is copied), its result
    detached. An override that takes the gradient by autograd then works under the
    ``torch.no_grad()`` of a sampler's or a loss's loop (as `BaseSampler.model_gradient`
    calls it), and a closed form over parameters keeps no graph. A non-tensor result is
    returned as it is, for the caller to name."""
    with torch.inference_mode(False), torch.enable_grad():
        g = grad(autograd_ready(x), *args, **kwargs)
    return g.detach() if isinstance(g, torch.Tensor) else g
