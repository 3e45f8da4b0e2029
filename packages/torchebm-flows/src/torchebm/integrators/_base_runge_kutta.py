r"""The Runge-Kutta driver: any Butcher tableau, fixed-grid or adaptive, ODE or Ito SDE.

* `BaseRungeKuttaIntegrator` runs any explicit or diagonally implicit Runge-Kutta
  method given by a Butcher tableau (class-level tuples `tableau_a`, `tableau_b`,
  `tableau_c`; optional embedded `error_weights` for adaptive step control).
* `BaseSDERungeKuttaIntegrator` adds Ito noise $\sqrt{2D\,|h|}\,\xi$ after the
  deterministic step of an explicit tableau, before the solve of an implicit one
  (drift-implicit schemes); strong order 1/2 whatever the tableau.

Time runs in either direction: a decreasing time grid (`t[0] > t[-1]`) integrates
backwards with negative steps, evaluating the field at the correct (decreasing) times, for
the fixed-step and the adaptive paths alike.

This machinery moved here from `torchebm.core._base_integrator` (only the flows
integrators and the samplers built on them use it); `from torchebm.core import
BaseRungeKuttaIntegrator` keeps working through core's lazy export.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from torchebm.core import BaseIntegrator, expand_t_like_x
from torchebm.core._base_integrator import _Evaluations, _prep_step, _require_callable
from torchebm.core._module import warn_once
from torchebm.core.errors import (
    _CHECKED,
    ConfigurationError,
    NonFiniteError,
    ShapeError,
    check_finite_tensor,
    check_generator,
    check_int,
    check_non_negative,
    check_positive,
)
from torchebm.integrators._checked import check_start, checked_field
from torchebm.integrators._compat_089 import accept_089_pickle, tableau_from_properties
from torchebm.integrators._inference import inference_mode_option
from torchebm.integrators._state import (
    _SolverRecord,
    fits,
    fixed_point,
    has_implicit_stage,
    rms_norm,
    solver_record,
    state_x,
    warn_unconverged,
)

__all__ = ["BaseRungeKuttaIntegrator", "BaseSDERungeKuttaIntegrator", "_integrate_time_grid"]

Drift = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# one fixed-grid step ``advance(x, t, h, stage_t, inplace, plan) -> x`` (see `_rk`)
Advance = Callable[[torch.Tensor, torch.Tensor, Any, Any, bool, Any], torch.Tensor]
#: grid intervals whose per-step time rows `_fixed` builds at once (memory O(chunk), not O(n))
_GRID_CHUNK = 1024


def _combine(
    x: torch.Tensor,
    h,
    coeffs: Sequence[float],
    ks: Sequence[torch.Tensor],
    inplace: bool = False,
):
    r"""``x + h * sum_j coeffs[j] * ks[j]`` skipping zero coefficients (``x`` itself if none).

    ``inplace``: ``x`` is a loop-owned state outside autograd, which may be overwritten
    (done only when no term aliases it and every term has its shape and dtype; the
    additions are the same in the same order, so the result is bit-identical).
    """
    terms = [(c, k) for c, k in zip(coeffs, ks) if c != 0.0]
    if not terms:
        return x
    c0, k0 = terms[0]
    if isinstance(h, float):
        if inplace and _updatable(x, [k for _, k in terms]):
            out = x.add_(k0, alpha=h * c0)
        else:
            out = torch.add(x, k0, alpha=h * c0)
        for c, k in terms[1:]:
            out = _iadd(out, k, h * c)
        return out
    if len(terms) == 1:
        return torch.addcmul(x, k0, h, value=c0)
    acc = k0 * c0
    for c, k in terms[1:]:
        acc.add_(k, alpha=c)
    return torch.addcmul(x, acc, h)


def _error_estimate(h: float, weights: Sequence[float], ks: Sequence[torch.Tensor]):
    """``h * sum_j weights[j] * ks[j]`` over the non-zero weights: the first term scaled
    into a fresh tensor, the others added in place (the embedded error of a step)."""
    terms = [(h * w, k) for w, k in zip(weights, ks) if w != 0.0]
    a0, k0 = terms[0]
    err = torch.mul(k0, a0)
    for a, k in terms[1:]:
        err = _iadd(err, k, a)
    return err


def _updatable(x: torch.Tensor, ks: Sequence[torch.Tensor]) -> bool:
    """Whether ``x += c * k`` for every ``k`` of ``ks`` can run in place on ``x``: same
    shape and dtype (no broadcast, no type promotion) and no ``k`` sharing its storage."""
    try:
        ptr, shape, dtype = x.untyped_storage().data_ptr(), x.shape, x.dtype
        for k in ks:
            if k.shape != shape or k.dtype != dtype or k.untyped_storage().data_ptr() == ptr:
                return False
    except (RuntimeError, NotImplementedError):  # no storage (a functorch-wrapped tensor)
        return False
    return True


def _stage_time(t: torch.Tensor, dt) -> torch.Tensor:
    """``t + dt``; computed once and expanded when ``t`` is a batch-uniform (expanded) time."""
    if (
        t.ndim == 1
        and t.shape[0] > 0
        and t.stride(0) == 0
        and not (isinstance(dt, torch.Tensor) and dt.ndim > 0)
    ):
        return (t[:1] + dt).expand(t.shape[0])
    return t + dt


def _iadd(dst: torch.Tensor, src: torch.Tensor, alpha: float) -> torch.Tensor:
    """``dst + alpha * src``, in place when ``dst`` is a fresh tensor outside autograd."""
    if dst.requires_grad or not fits(src.shape, dst.shape):
        return torch.add(dst, src, alpha=alpha)
    return dst.add_(src, alpha=alpha)


def _step_of(step_size: Any, x: torch.Tensor) -> tuple[Any, Any]:
    """`_prep_step` for `step()`: a tensor step holding NaN/inf is refused as a Python one is
    (one host read per call; none under `checked_inputs`, e.g. a sampler's loop, nor for a
    step batched by ``torch.func.vmap``, nor while torch.compile traces). A step of 0
    passes: it returns the state."""
    h, h_t = _prep_step(step_size, x)
    if not isinstance(h_t, torch.Tensor) or _CHECKED.get() or torch.compiler.is_compiling():
        return h, h_t  # (no host read in a compiled region: it would break the graph)
    try:
        ok = bool(h_t.isfinite().all())
    except RuntimeError:  # batched by torch.func.vmap: no value read on the host
        return h, h_t
    if not ok:
        raise ConfigurationError(
            f"step_size must be finite, got {step_size.detach().flatten()[:8].tolist()} (a "
            f"tensor of shape {tuple(step_size.shape)})"
        )
    return h, h_t


def _check_grid(t: Any, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        try:
            t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"t must be a 1D tensor of times, got {type(t).__name__}") from exc
    if t.ndim != 1 or t.shape[0] < 2:
        raise ConfigurationError(
            f"t must be a 1D tensor with length >= 2, got shape {tuple(t.shape)}"
        )
    t = t.to(device=x.device, dtype=x.dtype)
    return t if _CHECKED.get() else _monotone_grid(t)  # a checked block checked its grid once


def _end_time_shift(
    z: torch.Tensor, t: torch.Tensor, drift: Drift, ev: Any, sign: float
) -> torch.Tensor:
    r"""``z + sign (t - sg t) f(z, t)``: ``z`` in value, with the derivative of the flow in a
    grid end time ``t`` that the adaptive loop (stepping between Python floats) drops: at the
    end $\partial y/\partial t_1 = f(y, t_1)$ (``sign`` 1), at the start a shift of $x_0$ by
    $-f(x_0, t_0)\,dt_0$ (``sign`` -1) that the solve's graph carries to $y$. One evaluation."""
    ev.count += 1
    return z + sign * (t - t.detach()) * drift(z, t.detach().expand(z.shape[0]))


def _monotone_grid(t: torch.Tensor, name: str = "t") -> torch.Tensor:
    """``t`` if it is finite and strictly increasing or decreasing, else a named error.

    One host read per call (before the loop, never in it): a NaN time or a grid that turns
    back would otherwise integrate silently into NaN or a wrong answer.
    """
    d = t.diff()
    if bool(torch.isfinite(t).all() & ((d > 0).all() | (d < 0).all())):
        return t
    shown = t.tolist() if t.numel() <= 8 else f"{t[:8].tolist()}... ({t.numel()} points)"
    if not bool(torch.isfinite(t).all()):
        raise NonFiniteError(f"{name} must be finite, got {shown}")
    raise ConfigurationError(
        f"{name} must be strictly increasing or strictly decreasing (in the state's dtype "
        f"{t.dtype}), got {shown}"
    )


def _run_grid(
    x: torch.Tensor,
    times: torch.Tensor,
    dts: Sequence[Any] | torch.Tensor,
    step_fn: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor],
) -> torch.Tensor:
    """The one fixed-step loop: ``x = step_fn(x, times[i].expand(B), dts[i])``."""
    batch = x.shape[0]
    for i in range(len(dts)):
        x = step_fn(x, times[i].expand(batch), dts[i])
    return x


def _integrate_time_grid(
    x: torch.Tensor,
    t: torch.Tensor,
    step_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    r"""Loop ``x = step_fn(x, t_i, dt_i)`` over a 1-D time grid.

    ``t_i`` is ``t[i]`` expanded to ``(B,)`` and ``dt_i = t[i+1] - t[i]`` a 0-d tensor
    (negative on a decreasing grid). No host synchronisation happens in the loop.

    Args:
        x: State of shape ``(B, *event_shape)``.
        t: Time grid of shape ``(N,)``, ``N >= 2``, increasing or decreasing.
        step_fn: One step ``(x, t_i, dt_i) -> x``.

    Returns:
        The state after ``N - 1`` steps.

    Raises:
        ValueError: ``t`` is not 1-D, has fewer than two points or is not strictly monotone.
        torchebm.core.errors.NonFiniteError: ``t`` holds NaN or inf.

    Example:
        >>> x = _integrate_time_grid(torch.ones(2, 1), torch.linspace(0, 1, 11),
        ...                          lambda x, t, dt: x + dt * x)
    """
    if not isinstance(t, torch.Tensor) or t.ndim != 1:
        raise ConfigurationError(
            f"t must be a 1D tensor, got {tuple(t.shape) if isinstance(t, torch.Tensor) else t!r}"
        )
    if t.shape[0] < 2:
        raise ConfigurationError(f"t must have length >= 2, got {t.shape[0]}")
    t = _monotone_grid(t.to(device=x.device, dtype=x.dtype))
    return _run_grid(x, t, t.diff(), step_fn)


@dataclass(frozen=True)
class _Plan:
    """An explicit tableau scaled by one float step ``h``: ``stages[i]`` and ``final`` list
    ``(j, h * a_ij)`` / ``(j, h * b_j)`` for the non-zero coefficients, in order."""

    stages: tuple[tuple[tuple[int, float], ...], ...]
    final: tuple[tuple[int, float], ...]


def _planned_step(x, t, stage_t, plan: _Plan, drift, inplace, evaluations):
    """One explicit RK step from a `_Plan`: the operations of the generic path (first
    term out of place, then in place on that fresh tensor) in the same order."""
    ks: list[torch.Tensor] = []
    for terms, ti in zip(plan.stages, stage_t):
        base = x
        if terms:
            j, a = terms[0]
            base = torch.add(x, ks[j], alpha=a)
            for j, a in terms[1:]:
                base = _iadd(base, ks[j], a)
        ks.append(drift(base, t if ti is None else ti))
    evaluations.count += len(ks)
    final = plan.final
    j, a = final[0]
    same = _updatable(x, [ks[j] for j, _ in final])
    out = x.add_(ks[j], alpha=a) if inplace and same else torch.add(x, ks[j], alpha=a)
    for j, a in final[1:]:
        out = out.add_(ks[j], alpha=a) if same else _iadd(out, ks[j], a)
    return out, ks


class _Call(_Evaluations):
    """One `step`/`integrate` call's record: ``count`` (its evaluations, stored as `nfe`)
    and ``converged`` (`(B,)` bool, per chain, whether every implicit stage solve so far
    converged; ``None`` before the first solve), stored as `solver_converged`."""

    __slots__ = ("converged",)

    def __init__(self) -> None:  # both slots here: no super() call per step
        self.count = 0
        self.converged: torch.Tensor | None = None


class BaseRungeKuttaIntegrator(BaseIntegrator):
    r"""Generic Runge-Kutta integrator driven by a Butcher tableau.

    A subclass sets class attributes ``tableau_a`` (row ``i`` lists
    $a_{i0}, \dots, a_{i,i-1}$ and optionally a diagonal $a_{ii}$, which makes
    that stage implicit), ``tableau_b``, ``tableau_c``, and, for adaptive methods,
    ``error_weights`` $e = b - \hat b$ (one extra entry multiplies the FSAL stage
    $f(y_{n+1}, t+h)$), ``order`` (the step-size control exponent is
    $-1/\text{order}$; the order of the solution the step keeps, ``b``: 5 for
    Dormand-Prince, 4 for a Fehlberg pair that keeps its fourth-order solution) and ``fsal``.

    Stage $i$: $k_i = f(x + h\sum_{j<i} a_{ij}k_j,\; t + c_i h)$; an implicit
    stage solves $k_i = f(\text{base} + h a_{ii} k_i, t_i)$ by Picard iteration on the
    stage state $z = \text{base} + h a_{ii} k_i$ (``solver_max_iter`` evaluations). It
    converges when $|h a_{ii}|\,\mathrm{Lip}(f) < 1$, by that factor per evaluation; a
    solve that runs out of evaluations returns a truncated iterate, which is not the
    implicit step. Per chain, a solve converged when its last two stage states agree to
    ``solver_tol`` (`rows_close`); `solver_converged` reports, after each call, the chains
    whose every solve converged (no host sync), and the samplers that step such an
    integrator warn once per ``sample()`` about the rest. Every ``solver_check_every``
    iterations (0 = never) a solve stops early once every chain converged (one host sync
    per check). Update $x_{n+1} = x_n + h\sum_i b_i k_i$.

    Adaptive path (when ``error_weights`` is defined): embedded error
    $\mathrm{err} = h\sum_i e_i k_i$, scale $\mathrm{atol} + \mathrm{rtol}\max(|x|,|y|)$,
    ``ratio = norm(err / scale)`` (default RMS over every element of the batch: one step
    size for the batch, one host sync per attempted step); accept if ``ratio <= 1``;
    new $|h| = \min(|h|\,\mathrm{clip}(\mathrm{safety}\cdot\mathrm{ratio}^{-1/\mathrm{order}},
    \mathrm{min\_factor}, \mathrm{max\_factor}), \mathrm{max\_step\_size})$.
    ``max_steps`` bounds the number of *attempted* steps (accepted plus rejected).

    Without autograd the fixed-step loop updates its state in place: a ``drift`` must not
    keep the tensors it is called with beyond the call (clone what it stores).

    Args:
        device: Probe device.
        dtype: Probe dtype.
        atol: Absolute tolerance of the adaptive path.
        rtol: Relative tolerance of the adaptive path.
        max_steps: Maximum number of attempted adaptive steps; exceeding raises ``RuntimeError``.
        safety: Safety factor of the step-size controller.
        min_factor: Smallest step shrink factor.
        max_factor: Largest step growth factor.
        max_step_size: Upper bound on ``|h|`` in the adaptive path.
        norm: Error norm ``norm(z) -> scalar`` (default: RMS over all elements). The RMS
            over the batch loosens the tolerance of one hard sample among ``B`` easy ones by
            about $\sqrt{B}$ (as in torchdiffeq), so a sample's result depends on its batch;
            ``lambda z: z.square().flatten(1).mean(1).sqrt().max()`` holds every sample to
            the tolerance (the worst sample sets the step).
        solver_max_iter: Picard evaluations per implicit stage (>= 1; one evaluation
            is never reported converged).
        solver_tol: Convergence tolerance of the Picard iteration: per chain, the RMS
            change of the stage state relative to $\max(1, \operatorname{rms}(z))$,
            floored at 64 machine epsilons of the dtype (`rows_close`).
        solver_check_every: Stop a solve early, once every chain converged, checking every
            this many iterations (0 = never: always ``solver_max_iter`` evaluations).

    Example:
        >>> class Ralston(BaseRungeKuttaIntegrator):
        ...     tableau_a = ((), (2 / 3,))
        ...     tableau_b = (1 / 4, 3 / 4)
        ...     tableau_c = (0.0, 2 / 3)
        >>> out = Ralston().integrate({"x": torch.ones(4, 2)}, 0.1, 10, drift=lambda x, t: -x)

    References:
        Hairer, Norsett, Wanner, "Solving Ordinary Differential Equations I", 1993 (II.4).
    """

    tableau_a: tuple[tuple[float, ...], ...] = ()
    tableau_b: tuple[float, ...] = ()
    tableau_c: tuple[float, ...] = ()
    error_weights: tuple[float, ...] | None = None
    order: int | None = None
    fsal: bool = False

    _implicit = False  # a stage with a diagonal coefficient (set by `__init_subclass__`)
    __setstate__ = accept_089_pickle("_evaluations")  # objects pickled whole by torchebm 0.8.9

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        tableau_from_properties(cls)  # a 0.8.9 subclass's tableau properties
        cls._implicit = has_implicit_stage(cls.tableau_a)

    def __init__(
        self,
        device: Any = None,
        dtype: torch.dtype | None = None,
        *,
        atol: float = 1e-6,
        rtol: float = 1e-3,
        max_steps: int = 10_000,
        safety: float = 0.9,
        min_factor: float = 0.2,
        max_factor: float = 10.0,
        max_step_size: float = math.inf,
        norm: Callable[[torch.Tensor], Any] | None = None,
        solver_max_iter: int = 8,
        solver_tol: float = 1e-6,
        solver_check_every: int = 0,
    ):
        super().__init__(device=device, dtype=dtype)
        if hasattr(self, "register_load_state_dict_pre_hook"):  # public since torch 2.5
            self.register_load_state_dict_pre_hook(_drop_089_tableau)
        tolerances = _check_tolerances(atol, rtol)
        self.atol = tolerances[0]
        self.rtol = tolerances[1]
        self.max_steps = check_int("max_steps", max_steps, minimum=1)
        self.safety = check_positive("safety", safety)
        if self.safety > 1.0:  # a step grown past the error estimate's own choice
            raise ConfigurationError(f"safety must be in (0, 1], got {safety!r}")
        self.min_factor = check_positive("min_factor", min_factor)
        self.max_factor = check_positive("max_factor", max_factor)
        if self.min_factor > 1.0 or self.max_factor < 1.0:
            raise ConfigurationError(
                f"min_factor must be <= 1 <= max_factor, got min_factor={min_factor}, "
                f"max_factor={max_factor}"
            )
        # (int, float) too: mypy takes a float parameter for never being a numbers.Real
        if isinstance(max_step_size, bool) or not isinstance(
            max_step_size, (int, float, numbers.Real)
        ):
            raise TypeError(f"max_step_size must be a number, got {max_step_size!r}")
        if not float(max_step_size) > 0:
            raise ConfigurationError(f"max_step_size must be positive, got {max_step_size}")
        self.max_step_size = float(max_step_size)
        if norm is not None and not callable(norm):
            raise TypeError(f"norm must be callable, got {type(norm).__name__}")
        self.norm = norm
        self.solver_max_iter = check_int("solver_max_iter", solver_max_iter, minimum=1)
        self.solver_tol = check_non_negative("solver_tol", solver_tol)
        self.solver_check_every = check_int("solver_check_every", solver_check_every, minimum=0)
        self._solver = _SolverRecord()
        self._validate_tableau()

    # ------------------------------------------------------------------ tableau
    @classmethod
    def _validate_tableau(cls) -> None:
        a, b, c = cls.tableau_a, cls.tableau_b, cls.tableau_c
        s = len(b)
        if s == 0 or len(a) != s or len(c) != s:
            raise TypeError(
                f"{cls.__name__} must define tableau_a/tableau_b/tableau_c with one entry per "
                f"stage, got {len(a)}/{s}/{len(c)}"
            )
        for i, row in enumerate(a):
            if len(row) not in (i, i + 1):
                raise TypeError(
                    f"{cls.__name__}.tableau_a row {i} must have {i} or {i + 1} entries"
                )
        e = cls.error_weights
        if e is not None and len(e) not in (s, s + 1):
            raise TypeError(f"{cls.__name__}.error_weights must have {s} or {s + 1} entries")
        if e is not None and cls.order is None:
            raise TypeError(f"{cls.__name__} defines error_weights but no order")
        # consistency (order >= 1), the row-sum condition, an error estimate that is one
        sums: list[tuple[str, float, float]] = [("sum(tableau_b)", float(sum(b)), 1.0)]
        for i, row in enumerate(a):
            sums.append((f"sum(tableau_a[{i}]) = tableau_c[{i}]", float(sum(row)), float(c[i])))
        if e is not None:
            sums.append(("sum(error_weights)", float(sum(e)), 0.0))
        for rule, got, want in sums:
            if not abs(got - want) <= 1e-6:  # coefficients copied as 9-digit decimals pass
                raise ConfigurationError(f"{cls.__name__}: {rule} = {want} is required, got {got}")

    def _with_tolerances(self, atol: Any = None, rtol: Any = None) -> BaseRungeKuttaIntegrator:
        """A shallow copy with ``atol``/``rtol`` set (``None``: this one's), every other setting
        kept (``max_step_size``, ``safety``, the factors, ``norm``, ...) and its own `nfe`
        counter: ``self`` is left unchanged."""
        new = copy.copy(self)
        new._evaluations = _Evaluations()
        new._solver = _SolverRecord()
        new.atol, new.rtol = _check_tolerances(
            self.atol if atol is None else atol, self.rtol if rtol is None else rtol
        )
        return new

    @property
    def adaptive(self) -> bool:
        """Whether the tableau has an embedded error estimate."""
        return self.error_weights is not None

    @property
    def n_stages(self) -> int:
        return len(self.tableau_b)

    @property
    def solver_converged(self) -> torch.Tensor | None:
        r"""`(B,)` bool: per chain, whether every implicit stage solve of the last
        `step`/`integrate` call converged (stored when that call returns); `None` for an
        explicit tableau and before the first call.

        A solve converged for a chain when the RMS difference of its last two stage states
        $z = \text{base} + h a_{ii} k$ is at most $\tau \max(1, \operatorname{rms}(z))$,
        $\tau = \max(\texttt{solver\_tol}, 64\,\varepsilon_{\text{dtype}})$ (`rows_close`,
        the rule of the symplectic integrators' `solver_converged`); a solve of one
        evaluation counts as unconverged. An unconverged chain took a truncated Picard
        iterate, not the implicit step: on $dx = -\lambda x\,dt + \sqrt 2\,dW$ backward
        Euler-Maruyama with $h\lambda = 0.9$ and 8 evaluations has a stationary variance
        three times the scheme's. Reading it does not synchronise with the device. An
        `integrate` call whose solves did not all converge warns (``RuntimeWarning``, one
        host read; not under `checked_inputs`); `step`, which samplers call in their loops,
        does not.

        Example:
            >>> from torchebm.integrators import BackwardEulerMaruyamaIntegrator
            >>> bem = BackwardEulerMaruyamaIntegrator()
            >>> _ = bem.step({"x": torch.ones(3, 1)}, 0.1, drift=lambda x, t: -x)
            >>> bem.solver_converged
            tensor([True, True, True])
        """
        record = solver_record(self)  # None: unpickled from a version without one
        return None if record is None else record.converged

    # ------------------------------------------------------------------ core step
    def _rk(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        h,
        h_t,
        drift: Drift,
        k0: torch.Tensor | None = None,
        stage_t: Sequence[torch.Tensor | None] | None = None,
        inplace: bool = False,
        plan: _Plan | None = None,
        *,
        ev: _Call,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One RK step from ``(x, t)`` with step ``h``; returns ``(y, stages)``.

        ``stage_t``: the stage times ``t + c_i h`` when the caller has them (the fixed-step
        loop computes them for the whole grid at once); ``None`` computes them here.
        ``inplace``: ``x`` is owned by the loop (outside autograd) and ``y`` may reuse it.
        ``plan``: the scaled coefficients of an explicit tableau for this ``h`` (with
        ``stage_t``), built once per fixed-grid call: the same operations, no per-step
        bookkeeping. ``ev``: the call's record (`_begin_call`): its evaluations, and the
        convergence of the implicit solves, combined over the stages and steps of the call.
        """
        if plan is not None and stage_t is not None:
            return _planned_step(x, t, stage_t, plan, drift, inplace, ev)
        ks: list[torch.Tensor] = []
        nfe = 0
        for i, (row, ci) in enumerate(zip(self.tableau_a, self.tableau_c)):
            if i == 0 and k0 is not None:
                ks.append(k0)
                continue
            base = _combine(x, h, row[:i], ks)
            given = stage_t[i] if stage_t is not None else None
            if ci == 0.0:
                ti = t
            elif given is not None:
                ti = given
            else:
                ti = _stage_time(t, ci * h_t)
            diag = row[i] if len(row) > i else 0.0
            if diag == 0.0:
                k = drift(base, ti)
                nfe += 1
            else:
                k, used, ok = self._picard(base, ti, h, diag, drift)
                nfe += used
                if ev.converged is None:
                    ev.converged = ok
                else:
                    ev.converged &= ok  # a fresh mask owned by the call
            ks.append(k)
        ev.count += nfe
        return _combine(x, h, self.tableau_b, ks, inplace), ks

    def _picard(self, base, ti, h, diag, drift):
        """Solve ``k = f(base + h*diag*k, ti)`` by fixed-point iteration on the stage state
        ``z = base + h*diag*k``; returns ``(k, nfe, converged)``.

        The first evaluation is at ``base``, the other ``solver_max_iter - 1`` iterate the
        stage state in `fixed_point` (the integrators' one Picard loop: its per-chain
        ``converged``, all False after a single evaluation, and its early exit).
        """
        stage = [drift(base, ti)]  # the k of the latest evaluation

        def update(z: torch.Tensor) -> torch.Tensor:
            stage[0] = drift(z, ti)
            return _combine(base, h, (diag,), (stage[0],))

        z0 = _combine(base, h, (diag,), (stage[0],))
        args = (self.solver_max_iter - 1, self.solver_check_every, self.solver_tol)
        _, used, converged = fixed_point(update, z0, *args)
        return stage[0], used + 1, converged

    def _plan(self, h: float) -> _Plan | None:
        """`_Plan` of an explicit tableau for the float step ``h`` (``None``: implicit)."""
        stages = []
        for i, row in enumerate(self.tableau_a):
            if len(row) > i and row[i] != 0.0:
                return None
            stages.append(tuple((j, h * a) for j, a in enumerate(row[:i]) if a != 0.0))
        final = tuple((j, h * b) for j, b in enumerate(self.tableau_b) if b != 0.0)
        return _Plan(tuple(stages), final) if final else None

    # ------------------------------------------------------------------ public API
    def step(
        self,
        state: dict,
        step_size: Any,
        *,
        drift: Drift | None = None,
        t: Any = None,
    ) -> dict:
        r"""One fixed RK step (also for adaptive methods).

        Args:
            state: ``{"x": Tensor (B, *event_shape)}``.
            step_size: Python float (kept as float), 0-d tensor, or ``(B,)`` per-sample steps.
            drift: ``drift(x, t) -> Tensor`` shaped like ``x``; ``t`` is ``(B,)``. Required:
                omitted or ``None`` raises `ConfigurationError`.
            t: Current time: ``None`` (zeros), a number, or a ``(B,)`` tensor.

        Returns:
            ``{"x": Tensor}`` after the step.

        Raises:
            ValueError: missing drift, or a ``step_size`` that holds NaN or inf (a tensor
                one is read on the host once per call, except in a sampler's loop, under
                `checked_inputs`). A step of 0 returns ``x`` (a schedule that anneals the
                step to 0, as torchebm 0.8.9 allowed; `integrate` refuses 0).
        """
        x, drift, ev = self._begin_call(state, drift)
        h, h_t = _step_of(step_size, x)
        y = self._rk(x, self._time_vector(t, x), h, h_t, drift, ev=ev)[0]
        return self._end_call(ev, {"x": y})

    @inference_mode_option
    def integrate(
        self,
        state: dict,
        step_size: Any = None,
        n_steps: int | None = None,
        *,
        drift: Drift | None = None,
        t: Any = None,
        adaptive: bool | None = None,
        inference_mode: bool = False,
    ) -> dict:
        r"""Integrate ``dx/dt = drift(x, t)`` over a time grid or ``n_steps`` steps.

        Args:
            state: ``{"x": Tensor (B, *event_shape)}``.
            step_size: Step of the fixed path without a grid; initial step of the adaptive
                path, one number or one-element tensor (``None`` with a grid: a step is
                chosen automatically).
            n_steps: Number of fixed steps (without ``t``); with ``t`` any other value than
                ``len(t) - 1`` is ignored with a ``DeprecationWarning`` (0.8.9 code passes it).
            drift: Vector field ``drift(x, t)`` (required: omitted or ``None`` raises
                `ConfigurationError`).
            t: 1-D time grid (length >= 2), finite and strictly increasing or decreasing. The
                fixed path takes one step per interval (a ``step_size`` is then ignored with a
                ``DeprecationWarning``, as 0.8.9 ignored it);
                the adaptive path integrates from ``t[0]`` to ``t[-1]``.
                Without it the grid is ``arange(n_steps + 1) * step_size``.
            adaptive: ``None`` = adaptive iff the method has ``error_weights``.
            inference_mode: Run under ``torch.inference_mode()``.

        Returns:
            ``{"x": Tensor}``: the state at the end of the interval.

        Raises:
            ValueError: missing drift, ``n_steps <= 0``, malformed or non-monotone ``t``,
                ``adaptive=True`` for a method
                without error estimate.
            TypeError: ``n_steps`` is not an int (``3.0`` included), or ``step_size`` is
                not a number or a tensor (the adaptive path's first step too).
            ShapeError: ``drift`` returned a tensor not shaped like ``x`` (checked at each
                evaluation, not under `checked_inputs`).
            RuntimeError: the adaptive step budget ``max_steps`` is exhausted (the message
                names a tolerance ``atol + rtol |x|`` below the resolution of the state's
                dtype, e.g. 1e-14 in float32, as the likely cause) or the step size
                underflows with a finite drift (a stiff problem).
            torchebm.core.errors.NonFiniteError: ``state["x"]`` or ``t`` holds NaN/inf (one
                host read per call; `step` never checks); adaptive: the drift returned
                NaN/inf (at the current point, or at every step size down to underflow);
                ``indices`` names the batch rows.
        """
        x, drift, ev = self._begin_call(state, drift)
        use_adaptive = self._resolve_adaptive(adaptive)
        times, dts = self._grid(x, step_size, n_steps, t, need_step=not use_adaptive)
        check_start(x=x)
        if use_adaptive:  # an empty state (B = 0) has nothing to control: returned as on a grid
            timed = times.requires_grad and torch.is_grad_enabled() and x.numel() > 0
            if timed:  # t[0], t[-1] differentiable: the loop steps between floats
                x = _end_time_shift(x, times[0], drift, ev, -1.0)
            try:
                y = self._adaptive(x, times, step_size, drift, ev) if x.numel() else x.clone()
            finally:  # `nfe` counts a failed call too (max_steps, NaN, underflow)
                self._evaluations.count = ev.count
            if timed:
                y = _end_time_shift(y, times[-1], drift, ev, 1.0)
            return self._end_call(ev, {"x": y})
        rk = self._rk

        def advance(x, t, h, stage_t, inplace, plan):
            return rk(x, t, h, h, drift, stage_t=stage_t, inplace=inplace, plan=plan, ev=ev)[0]

        return self._end_call(ev, {"x": self._fixed(x, times, dts, advance)}, report=True)

    # ------------------------------------------------------------------ loops
    def _begin_call(self, state: dict, drift: Any) -> tuple[torch.Tensor, Drift, _Call]:
        """``state["x"]``, ``drift`` (checked) and the record of a `step`/`integrate` call:
        its own, stored as `nfe` and `solver_converged` by `_end_call` (a drift that calls
        this integrator again does not change it); outside `checked_inputs` the drift's
        output shape is checked at every evaluation (`checked_field`: no host read)."""
        x = state_x(state)
        drift = checked_field("drift", _require_callable("drift", drift, "drift(x, t)"), x)
        return x, drift, _Call()

    def _end_call(self, ev: _Call, out: dict, report: bool = False) -> dict:
        """``out``, with the call's record ``ev`` stored as `nfe` and, for a tableau with
        an implicit stage, `solver_converged` (the last call's). ``report`` (`integrate`,
        outside `checked_inputs`): one ``RuntimeWarning`` naming the chains whose solves did
        not converge (one host read; a sampler's loop calls `step` and reports itself)."""
        self._evaluations.count = ev.count
        if self._implicit:
            cast(_SolverRecord, solver_record(self, create=True)).converged = ev.converged
            if report and ev.converged is not None and not _CHECKED.get():
                warn_unconverged(
                    self,
                    ev.converged,
                    [out["x"]],
                    "implicit stage solves",
                    "drift",
                    " (they took a truncated fixed-point iterate, not the implicit step): raise "
                    f"solver_max_iter (now {self.solver_max_iter}), loosen solver_tol (now "
                    f"{self.solver_tol}) or lower the step size (the iteration converges only "
                    "for h * Lip(f) < 1)",
                )
        return out

    def _resolve_adaptive(self, adaptive: bool | None) -> bool:
        if adaptive is None:
            return self.error_weights is not None
        if adaptive and self.error_weights is None:
            raise ConfigurationError(
                f"adaptive=True requires an embedded error estimate; {type(self).__name__} has "
                "no error_weights (use dopri5, dopri8, bosh3 or adaptive_heun)"
            )
        return bool(adaptive)

    def _grid(self, x, step_size, n_steps, t, *, need_step: bool):
        """Return ``(times, dts)``; ``dts`` is a list of floats when the grid is uniform."""
        if n_steps is not None or t is None:
            if n_steps is None:
                raise ConfigurationError(
                    "n_steps must be an int >= 1, got None (or pass a time grid t)"
                )
            n_steps = check_int("n_steps", n_steps, minimum=1)
        if t is not None:
            times = _check_grid(t, x)
            # 0.8.9 required both positionally and ignored them beside t: still ignored, warned
            unused = [
                *([f"n_steps={n_steps}"] if n_steps not in (None, times.shape[0] - 1) else []),
                *([f"step_size={step_size!r}"] if need_step and step_size is not None else []),
            ]
            if unused:
                steps = (
                    "the steps are t[i+1] - t[i]" if need_step else "the solver adapts its steps"
                )
                warn_once(
                    f"{type(self).__name__}.integrate.unused_grid_steps "
                    f"{[u.partition('=')[0] for u in unused]}",  # names: values vary per call
                    f"{' and '.join(unused)} ignored: on a time grid t of {times.shape[0]} "
                    f"points {steps} (as in torchebm 0.8.9); pass t alone",
                    DeprecationWarning,
                )
            return times, times.diff()
        if step_size is None:
            raise ConfigurationError("step_size must be given when no time grid t is passed")
        if isinstance(step_size, torch.Tensor):
            if step_size.numel() != 1:
                raise ConfigurationError(
                    "integrate needs a scalar step_size (or a time grid t), got shape "
                    f"{tuple(step_size.shape)}"
                )
            ht = step_size.reshape(()).to(device=x.device, dtype=x.dtype)
            if not bool(torch.isfinite(ht) & (ht != 0)):
                raise ConfigurationError(
                    f"step_size must be non-zero and finite, got {step_size.item()!r}"
                )
            times = torch.arange(n_steps + 1, device=x.device, dtype=x.dtype) * ht
            return times, times.diff()
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real):
            raise TypeError(f"step_size must be a number or a tensor, got {step_size!r}")
        h = float(step_size)
        if h == 0.0 or not math.isfinite(h):
            raise ConfigurationError(f"step_size must be non-zero and finite, got {step_size!r}")
        times = torch.arange(n_steps + 1, device=x.device, dtype=x.dtype) * h
        return times, [h] * n_steps

    def _fixed(self, x, times, dts, advance: Advance) -> torch.Tensor:
        """The fixed-grid loop: ``x = advance(x, t_i, dt_i, stage_t_i, inplace, plan)`` per
        grid interval (`integrate` of each class passes its step: the RK step here, RK plus
        noise in `BaseSDERungeKuttaIntegrator`). The stage times are computed for
        `_GRID_CHUNK` intervals at a time (one vector operation per distinct ``c_i`` and
        chunk, not one per stage per step): the call holds the per-step time rows of one
        chunk, not of the whole grid (they took ~0.7-2.4 kB per step)."""
        n, batch = len(dts), x.shape[0]
        if n == 0:
            return x
        uniform = not isinstance(dts, torch.Tensor)  # a uniform grid: dts is [h] * n
        # outside autograd every state after the first step is the loop's own tensor (never
        # the caller's x): the steps update it in place, as a hand-written loop would
        owned = not torch.is_grad_enabled()
        plan = self._plan(dts[0]) if owned and uniform else None
        for lo in range(0, n, _GRID_CHUNK):
            k = min(n - lo, _GRID_CHUNK)
            starts, step = times[lo : lo + k], dts[0] if uniform else dts[lo : lo + k]
            # the chunk's time rows, expanded to (B,), unbound once (no per-step indexing)
            rows = [
                None if c == 0.0 else (starts + c * step)[:, None].expand(k, batch).unbind(0)
                for c in self.tableau_c
            ]
            stage_ts = list(zip(*(r if r is not None else (None,) * k for r in rows)))
            t_rows = starts[:, None].expand(k, batch).unbind(0)
            for j in range(k):
                i = lo + j
                x = advance(x, t_rows[j], dts[i], stage_ts[j], owned and i > 0, plan)
        return x

    def _adaptive(self, x, times: torch.Tensor, step_size: Any, drift: Drift, ev: _Call):
        t0, t1 = (float(v) for v in times[[0, -1]].tolist())
        span = abs(t1 - t0)
        if span == 0.0:
            return x
        direction = 1.0 if t1 > t0 else -1.0
        norm = self.norm or rms_norm
        e = self.error_weights
        if e is None or self.order is None:
            raise ConfigurationError(f"{type(self).__name__} has no error estimate: adaptive=False")
        order = float(self.order)
        batch = x.shape[0]

        def tvec(s: float) -> torch.Tensor:  # batch-uniform time: one value, expanded
            return torch.full((1,), s, device=x.device, dtype=x.dtype).expand(batch)

        k0 = None
        if step_size is None:
            k0 = drift(x, tvec(t0))
            ev.count += 1
            h = self._initial_step(x, t0, direction, k0, drift, norm, tvec, ev)
        else:
            h = _first_step(step_size)
        h = min(h, span, self.max_step_size)
        # f(x_n, t_n) is the first stage of every explicit tableau: reuse it after a
        # rejection (x unchanged) and, for FSAL methods, after an acceptance.
        reuse_first = self.tableau_c[0] == 0.0 and len(self.tableau_a[0]) == 0
        if not reuse_first:
            k0 = None
        t = t0
        # a remainder below 1e-12 of the span is not worth a step; the span, not |t1|: a
        # short interval far from 0 (or a tiny one) is integrated. The last step lands on t1
        # exactly (`last`), so the loop ends whatever the rounding of t + h.
        stop_tol = 1e-12 * span
        attempts = 0
        while direction * (t1 - t) > stop_tol:
            if attempts >= self.max_steps:
                raise self._max_steps_error(t, t1, x)
            attempts += 1
            remaining = abs(t1 - t)
            last = h >= remaining
            if last:
                h = remaining
            # the step t + h really takes (t rounds to its float grid): the increments then
            # add up to the span, also on a short interval far from 0
            hs = direction * h if last else (t + direction * h) - t
            tv = tvec(t)
            y, ks = self._rk(x, tv, hs, hs, drift, k0, ev=ev)
            k_new = None
            if self.fsal or len(e) > len(ks):
                k_new = drift(y, tvec(t1 if last else t + hs))
                ev.count += 1
                ks = [*ks, k_new]
            err = _error_estimate(hs, e, ks)
            scale = (
                torch.maximum(x.detach().abs(), y.detach().abs()).mul_(self.rtol).add_(self.atol)
            )
            ratio = float(norm(_scaled(err.detach(), scale, self.atol)))  # a host read: no graph
            if ratio <= 1.0:
                x = y
                t = t1 if last else t + hs
                k0 = k_new if self.fsal else None
            elif reuse_first:
                k0 = ks[0]
            if ratio == 0.0:
                factor = self.max_factor
            elif math.isfinite(ratio):
                factor = min(
                    self.max_factor, max(self.min_factor, self.safety * ratio ** (-1.0 / order))
                )
            else:
                factor = self.min_factor
                if reuse_first:  # ks[0] = f(x, t): a NaN/inf there no step size can cure
                    check_finite_tensor(f"{type(self).__name__}: the drift at t={t:.6g}", ks[0])
            h = min(h * factor, self.max_step_size)
            # underflow: a rejected step shrunk below 1e-14 of the span or 10 ulps of t (t + h
            # barely moves); an accepted one only grows the next (a tiny first step is no fault)
            tiny = h < max(1e-14 * span, 10 * math.ulp(t))
            if tiny and not ratio <= 1.0 and direction * (t1 - t) > stop_tol:
                raise _underflow(type(self).__name__, t, ratio, ks)
        return x

    def _max_steps_error(self, t: float, t1: float, x: torch.Tensor) -> RuntimeError:
        """The error of an adaptive solve that ran out of ``max_steps`` at ``t``; it names a
        tolerance below the resolution of the state ``x``'s dtype as a cause: ``atol + rtol
        |x|`` under half an eps of ``|x|`` asks for more digits than the state holds, and the
        steps shrink until the budget is spent (float32 at ``rtol=atol=1e-14``: ``x' = -x``
        on [0, 1], not stiff, failed this way). Ordinary tolerances (float32 at 1e-6 or 1e-7,
        as torchdiffeq's defaults are used; ``rtol=0`` with a workable ``atol``) are not."""
        eps, scale = torch.finfo(x.dtype).eps, float(x.detach().abs().max()) if x.numel() else 0.0
        tol, cause = self.atol + self.rtol * scale, ""
        if tol < 0.5 * eps * scale:
            wider = "" if x.dtype == torch.float64 else " or use float64"
            cause = (
                f". Here the tolerance atol + rtol |x| = {tol:.3g} (rtol={self.rtol:g}, "
                f"atol={self.atol:g}, |x| up to {scale:.3g}) is below the resolution of the "
                f"state's dtype {x.dtype} (eps {eps:.3g}): the error estimate cannot stay under "
                "rounding at every step, so the steps shrink until max_steps; loosen rtol (to "
                f"about {eps:.0e} or more){wider}"
            )
        return RuntimeError(
            f"{type(self).__name__}: maximum number of steps (max_steps={self.max_steps}, "
            f"accepted + rejected) exceeded at t={t:.6g} before reaching t={t1:.6g}; "
            "raise max_steps or loosen atol/rtol (if looser tolerances do not help, the "
            "problem is stiff: its steps are bounded by stability, which these explicit "
            f"methods cannot lift){cause}"
        )

    def _initial_step(self, x, t0, direction, f0, drift, norm, tvec, ev) -> float:
        """Hairer-Norsett-Wanner starting step (II.4), two drift evaluations in total."""
        scale = x.detach().abs().mul(self.rtol).add_(self.atol)
        d0 = float(norm(_scaled(x.detach(), scale, self.atol)))  # host reads: no graph
        d1 = float(norm(_scaled(f0.detach(), scale, self.atol)))
        # d1 = inf: a component at 0 moves while atol = 0 (no relative scale there yet)
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5 or math.isinf(d1)) else 0.01 * d0 / d1
        x1 = x + direction * h0 * f0
        f1 = drift(x1, tvec(t0 + direction * h0))
        ev.count += 1
        d2 = float(norm(_scaled((f1 - f0).detach(), scale, self.atol))) / h0
        if max(d1, d2) <= 1e-15 or math.isinf(max(d1, d2)):
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / float(self.order or 1))
        return min(100 * h0, h1)


def _scaled(v: torch.Tensor, scale: torch.Tensor, atol: float) -> torch.Tensor:
    """``v / scale`` elementwise, with ``0 / 0 = 0`` when ``atol=0``: a component that is
    exactly 0 and stays 0 then has scale 0 and no error (it made the ratio NaN, so every
    step was rejected). A NaN ``v`` stays NaN; with ``atol > 0`` the scale is positive."""
    q = v / scale
    return q if atol > 0 else q.masked_fill_(v == 0, 0.0)


def _first_step(step_size: Any) -> float:
    """``|step_size|`` given as the adaptive path's first step: a non-zero finite number or a
    one-element tensor, else a named error (a string, a bool or a ``(B,)`` tensor of
    per-sample steps is no single step size)."""
    if isinstance(step_size, torch.Tensor):
        if step_size.numel() != 1:
            raise ConfigurationError(
                "the adaptive path takes one scalar step_size (its first step), got a tensor "
                f"of shape {tuple(step_size.shape)}"
            )
        step_size = step_size.item()
    elif isinstance(step_size, bool) or not isinstance(step_size, numbers.Real):
        raise TypeError(f"step_size must be a number or a tensor, got {step_size!r}")
    h = abs(float(step_size))
    if h == 0.0 or not math.isfinite(h):
        raise ConfigurationError(f"step_size must be non-zero and finite, got {step_size!r}")
    return h


def _underflow(name: str, t: float, ratio: float, ks: list[torch.Tensor]) -> RuntimeError:
    """The error of an adaptive step size that underflowed: `NonFiniteError` (raised here,
    naming the rows) when a stage is still NaN/inf at the smallest step, the drift's fault;
    else the `RuntimeError` of a problem too stiff for the method."""
    for k in ks:
        check_finite_tensor(f"{name}: the drift near t={t:.6g} (step size underflow)", k)
    return RuntimeError(
        f"{name}: step size underflow at t={t:.6g} (error ratio {ratio}, finite drift); the "
        "problem is too stiff for this method and atol/rtol, or its solution blows up near "
        "t: loosen the tolerances or end the interval earlier (the implicit integrators here "
        "solve their stages by fixed-point iteration, which needs h * Lip(f) < 1: they do "
        "not lift a stiff problem's step limit)"
    )


class BaseSDERungeKuttaIntegrator(BaseRungeKuttaIntegrator):
    r"""Runge-Kutta drift plus Ito noise for $dx = f(x,t)\,dt + \sqrt{2D}\,dW$.

    Arguments as in [`BaseRungeKuttaIntegrator`][torchebm.integrators.BaseRungeKuttaIntegrator]
    (probe ``device``/``dtype``, adaptive tolerances and implicit-stage solver).

    After the deterministic RK step the noise $\sqrt{2D\,|h|}\,\xi$ is added, with
    $D$ evaluated at $(x_n, t_n)$ (strong order 1/2 whatever the tableau). A tableau with an
    implicit (diagonal) stage is drift-implicit instead: the noise is added to $x_n$ first and
    the stages are solved from $\tilde x = x_n + \sqrt{2D\,|h|}\,\xi$, so backward Euler
    gives $x' = x + h f(x', t + h) + \sqrt{2D h}\,\xi$ (Kloeden & Platen 1992, Sec. 12.2).
    For other implicit tableaux this is *not* the stochastic theta method: their explicit
    part sees $\tilde x$ too (the trapezoid tableau gives a stationary variance 19 % under
    the target on an Ornstein-Uhlenbeck process at $h\lambda = 0.2$, where
    $x' = x + \tfrac h2(f(x) + f(x')) + \sqrt{2Dh}\,\xi$ is exact); write such a scheme's
    `step` yourself. Only $D = g^2/2$ is given, so the noise is $|g|\,\xi$: with a shared
    Brownian increment and $g(x) < 0$ the path is the mirror of torchsde's (same law).
    $D$ is ``diffusion`` if given (a number, a tensor broadcastable against ``x`` or a
    ``(B,)`` tensor, or a callable ``diffusion(x, t)``), else ``noise_scale**2``, else no noise.
    A 1-D tensor of length ``B`` is per sample, also when ``B`` equals the last dimension of
    ``x`` (``(3,)`` for ``x`` of shape ``(3, 3)``): give one value per feature of the last
    dimension as ``(1, ..., 1, D)``, which means the same for every batch size.
    $D \ge 0$: a number or a constant tensor with a negative, NaN or infinite value raises
    ``ConfigurationError`` (a tensor at entry, with one host read: not under
    `checked_inputs` or in a sampler's loop). So does a callable returning one: `step`
    checks its output at once; `integrate` keeps the minimum and maximum of each step's
    output on the device and reads them once after the loop (no sync per step), naming the
    first bad step. Under `checked_inputs` and in a sampler's loop a callable is not
    checked: a bad value gives NaN states, which a sampler's ``nan_policy`` reports.
    Langevin dynamics with this integrator and ``drift = -grad U`` is
    $x' = x - h\nabla U(x) + \text{noise\_scale}\sqrt{2h}\,\xi$.

    A subclass sets only the tableau, as for
    [`BaseRungeKuttaIntegrator`][torchebm.integrators.BaseRungeKuttaIntegrator]:
    `step` and `integrate` add the noise to its deterministic step.

    Example:
        >>> class HeunThenNoise(BaseSDERungeKuttaIntegrator):  # Heun's step, then the noise
        ...     tableau_a = ((), (1.0,))
        ...     tableau_b = (0.5, 0.5)
        ...     tableau_c = (0.0, 1.0)
        >>> out = HeunThenNoise().integrate({"x": torch.zeros(4, 2)}, 0.01, 10,
        ...                                 drift=lambda x, t: -x, noise_scale=1.0)
    """

    _noise_first = False  # an implicit tableau: noise before the solve (`__init_subclass__`)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._noise_first = cls._implicit

    # ------------------------------------------------------------------ noise
    @staticmethod
    def _diffusion_value(diffusion, noise_scale, x, t):
        if diffusion is not None:
            d = diffusion(x, t) if callable(diffusion) else _check_diffusion(diffusion)
        elif noise_scale is not None:
            if isinstance(noise_scale, bool) or not isinstance(noise_scale, _SCALE_TYPES):
                raise TypeError(f"noise_scale must be a number or a tensor, got {noise_scale!r}")
            s = _check_diffusion(noise_scale, "noise_scale")  # a negative sigma is a mistake
            d = s.square() if isinstance(s, torch.Tensor) else float(s) ** 2
        else:
            return None
        if isinstance(d, torch.Tensor):
            d = d.to(device=x.device, dtype=x.dtype)  # (B,) per sample: (B, 1, ..., 1)
            per_sample = d.ndim == 1 and x.ndim > 1 and d.shape[0] == x.shape[0]
            if not (per_sample or fits(d.shape, x.shape)):
                raise ShapeError(
                    f"diffusion/noise_scale of shape {tuple(d.shape)} is neither per sample "
                    f"(({x.shape[0]},)) nor broadcastable against x of shape {tuple(x.shape)}"
                )
            return expand_t_like_x(d, x) if per_sample else d
        if isinstance(d, numbers.Real) and not isinstance(d, bool):
            if not (math.isfinite(d) and float(d) >= 0):  # a number a callable returned
                raise ConfigurationError(
                    f"diffusion(x, t) must return non-negative finite values, got {d!r}"
                )
            return float(d)
        raise TypeError(
            f"diffusion must be a number, a tensor or a callable, got {type(d).__name__}"
        )

    @staticmethod
    def _add_noise(y, x, d, h, noise, generator, owned=False, buffer=None):
        """``y + sqrt(2 d |h|) xi``; ``xi`` is ``noise``, else drawn (into ``buffer`` when
        given, which equals a fresh ``randn``); ``owned``: ``y`` may be updated in place."""
        amp: float | torch.Tensor
        if isinstance(d, float) and isinstance(h, float):
            amp = math.sqrt(2.0 * d * abs(h))
            if amp == 0.0:
                return y
        else:
            amp = torch.sqrt((2.0 * abs(h)) * torch.as_tensor(d, device=x.device, dtype=x.dtype))
        if noise is None:
            if buffer is not None:
                noise = buffer.normal_(generator=generator)
            else:
                noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        fresh = (owned or y is not x) and not y.requires_grad
        if isinstance(amp, float):
            return y.add_(noise, alpha=amp) if fresh else y.add(noise, alpha=amp)
        if fresh and fits(amp.shape, y.shape):
            return y.addcmul_(noise, amp)
        return torch.addcmul(y, noise, amp)

    def _noisy_advance(self, x, drift, diffusion, noise_scale, generator, record, ev) -> Advance:
        """The step of the fixed-grid loop, with the noise resolved once: a constant
        diffusion is validated and shaped before the first step, and outside autograd
        every step's noise is drawn into one buffer (the same numbers as a fresh
        ``randn``); a callable diffusion is evaluated at ``(x_n, t_n)`` per step, and the
        ``(min, max)`` of each tensor it returns written to ``record`` when that is a
        `_DiffusionRange` (on the device: `_check_record` reads them once, after the loop)."""
        per_step = diffusion if callable(diffusion) else None
        d0 = None if per_step else self._diffusion_value(diffusion, noise_scale, x, None)
        buffer = None
        if not torch.is_grad_enabled():
            buffer = torch.empty(x.shape, device=x.device, dtype=x.dtype)
        rk, diffusion_value, add_noise = self._rk, self._diffusion_value, self._add_noise
        noise_first = self._noise_first

        def advance(x, t, h, stage_t, inplace, plan):
            d = d0
            if per_step is not None:  # D(x_n, t_n) may alias x: no in-place update
                d, inplace = diffusion_value(per_step, None, x, t), False
                if record is not None:
                    record.add(d)
            if noise_first and d is not None:  # drift-implicit: solve from x + noise
                x = add_noise(x, x, d, h, None, generator, inplace, buffer)
                return rk(x, t, h, h, drift, stage_t=stage_t, inplace=inplace, plan=plan, ev=ev)[0]
            y = rk(x, t, h, h, drift, stage_t=stage_t, inplace=inplace, plan=plan, ev=ev)[0]
            if d is None:
                return y
            return add_noise(y, x, d, h, None, generator, inplace, buffer)

        return advance

    # ------------------------------------------------------------------ public API
    def step(  # type: ignore[override]
        self,
        state: dict,
        step_size: Any,
        *,
        drift: Drift | None = None,
        diffusion: Any = None,
        noise: torch.Tensor | None = None,
        noise_scale: Any = None,
        t: Any = None,
        generator: torch.Generator | None = None,
    ) -> dict:
        r"""One step $x' = \mathrm{RK}(x) + \sqrt{2D|h|}\,\xi$ (an implicit tableau:
        $x' = \mathrm{RK}(x + \sqrt{2D|h|}\,\xi)$, see the class docstring).

        Args:
            state: ``{"x": Tensor (B, *event_shape)}``.
            step_size: Python float (kept as float), 0-d tensor or ``(B,)`` tensor.
            drift: ``drift(x, t) -> Tensor`` shaped like ``x`` (required: omitted or
                ``None`` raises `ConfigurationError`).
            diffusion: $D \ge 0$: number, tensor, or callable ``diffusion(x, t)`` (see the
                class docstring for what is checked).
            noise: Pre-drawn $\xi$ of the shape of ``x`` (then no random draw happens).
            noise_scale: $\sigma$ with $D = \sigma^2$ (used when ``diffusion`` is None).
            t: Current time: ``None`` (zeros), a number or a ``(B,)`` tensor.
            generator: Source of $\xi$ (the global RNG is untouched when given).

        Returns:
            ``{"x": Tensor}``.

        Raises:
            ValueError: missing drift, or a ``step_size`` that holds NaN or inf (a tensor
                one is read on the host once per call, except in a sampler's loop, under
                `checked_inputs`). A step of 0 returns ``x`` (a schedule that anneals the
                step to 0, as torchebm 0.8.9 allowed; `integrate` refuses 0).
            ShapeError: ``noise`` is not a tensor of the shape of ``x`` (a smaller one would
                broadcast: the same noise in every chain or every coordinate).

        Example:
            >>> em = EulerMaruyamaIntegrator()  # doctest: +SKIP
            >>> em.step({"x": x}, 0.01, drift=lambda x, t: -x, noise_scale=1.0)  # doctest: +SKIP
        """
        x, drift, ev = self._begin_call(state, drift)
        if noise is not None and (not isinstance(noise, torch.Tensor) or noise.shape != x.shape):
            got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
            raise ShapeError(
                f"noise must be a tensor of the shape of x {tuple(x.shape)}, got {got}"
            )
        if noise is not None and (noise.dtype != x.dtype or noise.device != x.device):
            raise TypeError(  # a float64 noise promoted a float32 state, only with autograd on
                f"noise must have the dtype and device of x ({x.dtype}, {x.device}), got "
                f"({noise.dtype}, {noise.device})"
            )
        if not _CHECKED.get():  # a sampler's loop checked its generator once
            check_generator(generator, x.device, of="the state")
        h, h_t = _step_of(step_size, x)
        tv = self._time_vector(t, x)
        d = self._diffusion_value(diffusion, noise_scale, x, tv)
        if d is None and noise is not None:
            raise ConfigurationError(
                "noise= was given without diffusion= or noise_scale=, so the step would be "
                "deterministic: pass noise_scale=1.0 for sqrt(2|h|) noise, or diffusion=D"
            )
        if callable(diffusion) and isinstance(d, torch.Tensor):  # one host read (not in a loop)
            _check_diffusion(d, "diffusion(x, t)")
        if d is not None and self._noise_first:  # drift-implicit: solve from x + noise
            x_noisy = self._add_noise(x, x, d, h, noise, generator)
            return self._end_call(ev, {"x": self._rk(x_noisy, tv, h, h_t, drift, ev=ev)[0]})
        y = self._rk(x, tv, h, h_t, drift, ev=ev)[0]
        y = y if d is None else self._add_noise(y, x, d, h, noise, generator)
        return self._end_call(ev, {"x": y})

    @inference_mode_option
    def integrate(  # type: ignore[override]
        self,
        state: dict,
        step_size: Any = None,
        n_steps: int | None = None,
        *,
        drift: Drift | None = None,
        diffusion: Any = None,
        noise_scale: Any = None,
        t: Any = None,
        adaptive: bool | None = None,
        inference_mode: bool = False,
        generator: torch.Generator | None = None,
    ) -> dict:
        r"""Integrate the SDE on a grid (fixed steps) or the ODE (``diffusion=noise_scale=None``).

        On a decreasing grid the noise uses $|dt|$. Adaptive stepping is ODE-only.

        Args:
            state: ``{"x": Tensor}``.
            step_size: Step size (without ``t``).
            n_steps: Number of steps (without ``t``).
            drift: ``drift(x, t)`` (required: omitted or ``None`` raises
                `ConfigurationError`).
            diffusion: $D \ge 0$ as a number, tensor, or callable ``diffusion(x, t)`` (see the
                class docstring for what is checked).
            noise_scale: $\sigma$, $D = \sigma^2$.
            t: Time grid.
            adaptive: See [`BaseRungeKuttaIntegrator.integrate`][torchebm.integrators.BaseRungeKuttaIntegrator.integrate].
            inference_mode: Run under ``torch.inference_mode()``.
            generator: Source of the Gaussian increments.

        Raises:
            ValueError: missing drift (omitted or ``None``), adaptive stepping requested
                together with noise.
            ConfigurationError: a ``diffusion`` that is negative, NaN or infinite (a
                callable's output: checked after the loop, not under `checked_inputs`).
            ShapeError: ``drift`` returned a tensor not shaped like ``x``.
        """
        noisy = diffusion is not None or noise_scale is not None
        if noisy and adaptive:
            raise ConfigurationError(
                "Adaptive stepping is only supported for ODEs; got diffusion/noise_scale "
                "together with adaptive=True"
            )
        if not noisy:
            return super().integrate(state, step_size, n_steps, drift=drift, t=t, adaptive=adaptive)
        x, drift, ev = self._begin_call(state, drift)
        check_generator(generator, x.device, of="the state")  # an int failed inside randn
        times, dts = self._grid(x, step_size, n_steps, t, need_step=True)
        check_start(x=x)
        record = None
        if callable(diffusion) and not _CHECKED.get():
            record = _DiffusionRange(len(dts), x)
        advance = self._noisy_advance(x, drift, diffusion, noise_scale, generator, record, ev)
        out = self._fixed(x, times, dts, advance)
        if record is not None:
            _check_record(record, times)
        return self._end_call(ev, {"x": out}, report=True)


def _drop_089_tableau(module: Any, state_dict: dict, prefix: str, *_: Any) -> None:
    """Load pre-hook: torchebm 0.8.9 saved the Butcher tableau as buffers (``_buf_a``,
    ``_buf_b``, ``_buf_c``, ``_buf_e``); the tableau is the class's, so they are dropped and a
    strict load of a 0.8.9 sampler checkpoint succeeds."""
    for name in ("_buf_a", "_buf_b", "_buf_c", "_buf_e"):
        state_dict.pop(prefix + name, None)


_SCALE_TYPES: tuple[type, ...] = (torch.Tensor, numbers.Real)


def _check_diffusion(d: Any, name: str = "diffusion") -> Any:
    """A constant ``diffusion`` (or the tensor a callable returned to `step`): a number must
    be finite and >= 0 (a Python comparison); a tensor must hold finite values >= 0 (one host
    read, skipped under `checked_inputs` and in a sampler's loop, whose NaN policy watches
    the chains). Anything else is returned for `_diffusion_value`'s ``TypeError``."""
    if isinstance(d, numbers.Real) and not isinstance(d, bool):
        return check_non_negative(name, d)  # a float (numpy scalars too)
    if not isinstance(d, torch.Tensor) or _CHECKED.get():
        return d
    ok = ((d >= 0) & (d < float("inf"))).flatten()  # NaN fails both
    if bool(ok.all()):
        return d
    bad = torch.nonzero(~ok).flatten()[:8]
    raise ConfigurationError(
        f"{name} must hold non-negative finite values, got "
        f"{d.detach().flatten()[bad].tolist()} at flat indices {bad.tolist()} of a {name} "
        f"of shape {tuple(d.shape)}"
    )


class _DiffusionRange:
    """The ``(min, max)`` of a callable diffusion's output at each step of one `integrate`
    call, kept on the device: per step two 0-d results appended to lists that are stacked
    every `_GRID_CHUNK` steps (per-step tensors held ~1.7 kB a step over a long grid; an
    indexed write per step cost twice the append). A step that returned a number keeps 0s."""

    def __init__(self, n_steps: int, x: torch.Tensor):
        self.zero = x.new_zeros(())
        self.lows: list[torch.Tensor] = []
        self.highs: list[torch.Tensor] = []
        self.chunks: list[torch.Tensor] = []

    def add(self, d: Any) -> None:
        """Record the next step's diffusion ``d`` (a number was checked already)."""
        lo, hi = torch.aminmax(d.detach()) if isinstance(d, torch.Tensor) else (self.zero,) * 2
        self.lows.append(lo)
        self.highs.append(hi)
        if len(self.lows) == _GRID_CHUNK:
            self._stack()

    def _stack(self) -> None:
        if self.lows:
            self.chunks.append(torch.stack([torch.stack(self.lows), torch.stack(self.highs)], 1))
            self.lows, self.highs = [], []

    @property
    def values(self) -> torch.Tensor:
        """``(n_steps, 2)``: each step's ``(min, max)``."""
        self._stack()
        return torch.cat(self.chunks) if self.chunks else self.zero.new_zeros(0, 2)


def _check_record(record: _DiffusionRange, times: torch.Tensor) -> None:
    """The ``(min, max)`` of a callable diffusion's output at each step of an `integrate`
    call (`_noisy_advance`), read once after the loop: a negative, NaN or infinite value is
    a `ConfigurationError` naming the first step that returned one (the states are NaN)."""
    lo, hi = record.values.unbind(1)
    bad = ~(lo >= 0) | ~(hi < math.inf)  # NaN fails both
    try:
        if not bool(bad.any()):
            return
    except RuntimeError:  # under torch.func.vmap no value is read on the host: unchecked
        return
    i = int(bad.nonzero()[0])
    raise ConfigurationError(
        f"diffusion(x, t) must return non-negative finite values, got values in "
        f"[{float(lo[i])!r}, {float(hi[i])!r}] at step {i} (t={float(times[i]):.6g}) of the "
        f"{lo.shape[0]} steps of this integrate call"
    )


def _check_tolerances(atol: Any, rtol: Any) -> tuple[float, float]:
    """``(atol, rtol)`` as floats: non-negative, finite, not both 0."""
    a = check_non_negative("atol", atol)
    r = check_non_negative("rtol", rtol)
    if a == 0.0 and r == 0.0:
        raise ConfigurationError("atol and rtol must not both be 0")
    return a, r
