r"""``BaseSampler``: the shared sampling loop every TorchEBM sampler plugs one step into.

Kernel vs driver (as in pyro's MCMC kernels or torchdiffeq's solvers): the base class
owns :meth:`BaseSampler.sample` (argument validation, the initial state, schedulers,
the step loop, thinning, the preallocated trajectory, diagnostics, the NaN policy,
``torch.no_grad()``, autocast and the optional ``torch.compile`` path) and a subclass
implements one transition in :meth:`BaseSampler.step` (plus, when it carries more than
the position, :meth:`BaseSampler.init_state`).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import torch

from torchebm.core._base_model import BaseModel, _AnalyticModel
from torchebm.core._module import TorchEBMModule, _direct
from torchebm.core._schedulable import Schedulable, _schedulable_subtree
from torchebm.core._schedulers import ConstantScheduler
from torchebm.core.errors import (
    ConfigurationError,
    NonFiniteError,
    ShapeError,
    check_finite_tensor,
    check_in,
    check_int,
    check_tensor,
)

__all__ = ["BaseSampler", "SamplerContext", "NAN_POLICIES"]

#: Accepted values of ``nan_policy``.
NAN_POLICIES = ("raise", "warn", "resample")

State = dict[str, torch.Tensor]


@dataclass
class SamplerContext:
    r"""Per-call information handed to :meth:`BaseSampler.step` (one object per ``sample()``).

    Attributes:
        model_kwargs: Normalised conditioning, forwarded to the model (``{}`` = none).
        generator: The call's random generator (``None`` = global RNG).
        n_steps: Total number of steps of this call.
        thin: Thinning factor of this call.
        event_shape: Shape of one sample (``x.shape[1:]``).
        i: Number of steps completed before the current :meth:`~BaseSampler.step` call.
        n: Number of steps the current call advances (1 for MCMC samplers; larger only for
            samplers whose :meth:`~BaseSampler._stride` groups steps, e.g. adaptive ODE
            solves between recorded times).
        extra: Free-form per-call values a sampler resolves in
            :meth:`~BaseSampler.init_state` (e.g. a dispatch backend or a time grid).
        nan_policy: This call's NaN policy (``"raise"``, ``"warn"`` or ``"resample"``).
        nan_check_every: Steps between this call's NaN checks (1 under ``"resample"``).
    """

    model_kwargs: dict[str, Any]
    generator: torch.Generator | None
    n_steps: int
    thin: int
    event_shape: tuple[int, ...]
    i: int = 0
    n: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    nan_policy: str = "raise"
    nan_check_every: int = 1


def _event_shape(dim: Any) -> tuple[int, ...]:
    if isinstance(dim, numbers.Integral) and not isinstance(dim, bool):
        dims: tuple[Any, ...] = (dim,)
    elif isinstance(dim, (tuple, list, torch.Size)):
        dims = tuple(dim)
    else:
        raise TypeError(f"dim must be an int or a tuple of ints, got {dim!r}")
    if not dims:
        raise ConfigurationError("dim must not be empty, got ()")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1:
            raise ConfigurationError(f"dim must hold positive ints, got {dim!r}")
    return tuple(int(d) for d in dims)


def _finite_rows(x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: rows of ``x`` holding only finite values (no host sync).

    ``max |x|`` per row is NaN or inf exactly for rows holding a NaN or an infinity
    (``amax`` propagates NaN): three kernels instead of ``isfinite(x).all(dim=1)``'s six,
    2-8x cheaper per step.
    """
    flat = x if x.ndim == 2 else x.reshape(x.shape[0], -1)
    return flat.abs().amax(dim=1) < math.inf


def _nonfinite_rows(x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: rows of ``x`` holding a NaN or an infinity (no host sync)."""
    return ~_finite_rows(x)


def _batch_view(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape[0], *([1] * (x.ndim - 1)))


class BaseSampler(Schedulable, TorchEBMModule):
    r"""Base class of samplers: owns the sampling loop, a subclass implements one step.

    A subclass implements :meth:`step` (``state -> state``, where ``state`` is a dict of
    tensors holding at least the chains ``"x"`` of shape ``(B, *event_shape)``) and, when
    it carries more than the position (momenta, masks, cached energies), :meth:`init_state`.
    It declares its diagnostics in ``diagnostic_keys`` and computes the non-standard ones
    in :meth:`compute_diagnostics`. Hyper-parameters that may follow a schedule are
    registered with :meth:`register_scheduler` / ``_register_param``; the loop steps every
    scheduler of the module tree once per step and resets them at the start of
    ``sample()``.

    Subclasses that override :meth:`sample` themselves (the seed documentation's custom
    sampler pattern) keep working: only a class that implements neither :meth:`step` nor
    :meth:`sample` is abstract.

    **NaN policy.** Chains are checked for NaN/inf on the device every
    ``nan_check_every`` steps (default 10) and after the last step: a ``(B,)`` record of
    the first check that saw each chain non-finite, no host sync. Every sampler of the
    library updates ``x`` additively, so a chain that went NaN/inf stays so and a sparse
    check misses nothing (HMC rejects non-finite proposals; only a ``clamp`` can turn an
    infinity between two checks back into a bound, use ``nan_check_every=1`` there to see
    it); a sparse check only brackets the step: chain ``i`` went bad in the window
    ``(previous check, check]`` (exact with ``nan_check_every=1``, or from a recorded
    trajectory). Checking costs about as much as a step of a closed-form energy on a large
    batch, hence not every step by default. At the end of ``sample()`` (one sync):
    ``"raise"`` (default) raises :class:`~torchebm.core.errors.NonFiniteError` whose
    ``indices`` are the bad chains, ``steps`` each chain's last step of its window and
    ``step`` the smallest of them (``windows`` holds the ``(first, last)`` step pairs);
    ``"warn"`` emits a ``RuntimeWarning`` with the same facts and returns the non-finite
    chains as they are; ``"resample"`` checks after every step whatever
    ``nan_check_every`` says, restarts every chain that went non-finite from its own
    starting point (then keeps going, with fresh noise for stochastic samplers) and warns
    at the end which chains were restarted. A non-finite starting ``x`` is rejected at
    entry.

    Args:
        model: The energy model (or, for flow samplers, the vector field). Registered as a
            submodule when it is an ``nn.Module``, so ``sampler.to()`` moves it.
        dtype: Dtype of the chains when the model has no parameters (otherwise the
            model's parameter dtype wins, see :class:`TorchEBMModule`).
        device: Device of the chains when the model has no parameters.
        n_steps: Default number of steps for ``sample(n_steps=None)`` (keyword-only);
            ``None`` uses the class default ``default_n_steps``.
        nan_policy: ``"raise"`` (default), ``"warn"`` or ``"resample"`` (keyword-only;
            ``sample(nan_policy=...)`` overrides it per call).

    Example:
        >>> class GradientFlow(BaseSampler):
        ...     def step(self, state, ctx):
        ...         x = state["x"]
        ...         state["x"] = x - 0.1 * self._model_gradient(x, ctx.model_kwargs)
        ...         return state
        >>> from torchebm.core import HarmonicModel
        >>> GradientFlow(HarmonicModel()).sample(dim=2, n_samples=4, n_steps=10).shape
        torch.Size([4, 2])
    """

    #: Number of steps of ``sample(n_steps=None)`` when the constructor got none.
    default_n_steps: ClassVar[int] = 100
    #: Diagnostics recorded by ``sample(return_diagnostics=True)``. Standard keys:
    #: ``"mean"``/``"var"`` ``(n_kept, *event_shape)``, ``"energy"`` ``(n_kept,)``.
    diagnostic_keys: ClassVar[tuple[str, ...]] = ("mean", "var", "energy")
    #: How often (in steps) :meth:`converged` is polled; each poll is one host sync.
    convergence_check_every: ClassVar[int] = 16
    #: How often (in steps) chains are checked for NaN/inf (on the device, no sync); the
    #: last step is always checked. Assign on an instance or pass ``sample(nan_check_every=)``.
    nan_check_every: int = 10

    def __init__(
        self,
        model: Any,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
        *,
        n_steps: int | None = None,
        nan_policy: str = "raise",
    ):
        cls = type(self)
        if cls.step is BaseSampler.step and cls.sample is BaseSampler.sample:
            raise TypeError(
                f"Can't instantiate {cls.__name__}: a sampler must implement step() "
                "(or override sample())"
            )
        super().__init__(device=device, dtype=dtype)
        if model is None:
            raise TypeError(f"{cls.__name__} requires a model, got None")
        self.model = model
        self.n_steps = None if n_steps is None else check_int("n_steps", n_steps, minimum=1)
        self.nan_policy = check_in("nan_policy", nan_policy, NAN_POLICIES)

    # ------------------------------------------------------------------ subclass API
    def init_state(self, x: torch.Tensor, ctx: SamplerContext) -> State:
        """Build the loop state from the validated starting chains ``x`` ``(B, *event_shape)``.

        The default state is ``{"x": x}``. ``x`` may be the caller's tensor: never modify it
        in place.
        """
        return {"x": x}

    def step(self, state: State, ctx: SamplerContext) -> State:
        """Advance every chain by ``ctx.n`` steps (one, for MCMC samplers) and return the state.

        Runs under ``torch.no_grad()``; read scheduled hyper-parameters here with
        :meth:`get_scheduled_value` (the loop steps the schedulers afterwards). It must not
        synchronise with the device (no ``.item()``, ``bool(tensor)``, printing).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    def compute_diagnostics(self, state: State, ctx: SamplerContext) -> dict[str, torch.Tensor]:
        """Per-kept-step diagnostics (batch statistics) of ``state``; keys from ``diagnostic_keys``.

        The base computes ``"mean"``/``"var"`` (population variance clamped to
        ``[1e-10, 1e10]``; zeros for a single chain) and ``"energy"`` (batch mean, reusing a
        cached ``state["energy"]`` when the sampler keeps one). Subclasses add their own
        keys and call ``super()``.
        """
        keys = self.diagnostic_keys
        x = state["x"]
        out: dict[str, torch.Tensor] = {}
        if "mean" in keys:
            out["mean"] = x.mean(dim=0)
        if "var" in keys:
            if x.shape[0] > 1:
                out["var"] = x.var(dim=0, unbiased=False).clamp_(1e-10, 1e10)
            else:
                out["var"] = torch.zeros_like(x[0])
        if "energy" in keys:
            e = state.get("energy")
            if e is None:
                e = self._model_energy(x, ctx.model_kwargs)
            out["energy"] = e.mean()
        return out

    def converged(self, state: State) -> torch.Tensor | None:
        """Optional early stop: a 0-d bool tensor, ``True`` once no chain needs more steps.

        Polled every ``convergence_check_every`` steps (one host sync per poll); ``None``
        (the default) never stops early. When it fires, remaining trajectory and diagnostic
        rows repeat the final (frozen) state.
        """
        return None

    def _restart_chains(
        self, state: State, mask: torch.Tensor, x0: torch.Tensor, ctx: SamplerContext
    ) -> State:
        """``nan_policy="resample"``: put chains ``mask`` ``(B,)`` back at their start ``x0``.

        Subclasses holding more per-chain state (velocities, cached energies) extend it.
        """
        x = state["x"]
        state["x"] = torch.where(_batch_view(mask, x), x0, x)
        return state

    def _stride(self, n_steps: int, thin: int, recording: bool, ctx: SamplerContext) -> int:
        """Steps advanced by one :meth:`step` call (1; samplers with macro steps override).

        Called after :meth:`init_state`. A stride that does not divide ``thin`` skips
        recorded rows, so a sampler that records returns ``thin`` (or a divisor of it).
        """
        return 1

    def _infer_dim(self) -> Any:
        """Event shape to use when ``sample()`` gets neither ``x`` nor ``dim`` (``None``: none)."""
        return None

    # ------------------------------------------------------------------ model helpers
    def _model_gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        r""":math:`\nabla_x E(x)`: the model's ``gradient`` (closed form for analytic models,
        one autograd call otherwise), same shape as ``x``."""
        model = self.model
        grad_fn = getattr(model, "gradient", None)
        if grad_fn is not None:
            g = grad_fn(x, model_kwargs=model_kwargs) if model_kwargs else grad_fn(x)
        else:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                e = model(xg, **model_kwargs) if model_kwargs else model(xg)
                (g,) = torch.autograd.grad(e.sum(), xg)
        if g.shape != x.shape:
            raise ShapeError(
                f"the gradient of {type(model).__name__} has shape {tuple(g.shape)}, "
                f"but the chains have shape {tuple(x.shape)}"
            )
        return g

    def _gradient_fn(self, ctx: SamplerContext) -> Callable[[torch.Tensor], torch.Tensor]:
        r"""``x -> \nabla_x E(x)`` for this call, resolved once (kept in ``ctx.extra``).

        The model's own ``gradient`` when it is one of the library's (marked
        ``_returns_input_shape``: shaped like ``x`` by construction) and there is no
        conditioning; otherwise :meth:`_model_gradient`, which
        also checks the shape of what a custom ``gradient`` returns.
        """
        fn: Callable[[torch.Tensor], torch.Tensor] | None = ctx.extra.get("gradient")
        if fn is None:
            model, mk = self.model, ctx.model_kwargs
            if (
                not mk
                and isinstance(model, BaseModel)
                and getattr(type(model).gradient, "_returns_input_shape", False)
                and "gradient" not in model.__dict__
            ):
                # chains are always batched: an analytic model's closed form directly
                if isinstance(model, _AnalyticModel) and "_grad" not in model.__dict__:
                    fn = model._grad
                else:
                    fn = model.gradient
            else:
                fn = partial(self._model_gradient, model_kwargs=mk)
            ctx.extra["gradient"] = fn
        return fn

    def _model_energy(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        """Energies ``(B,)`` of ``x`` under the model."""
        model = _direct(self.model)  # nothing registered: skip nn.Module.__call__
        return model(x, **model_kwargs) if model_kwargs else model(x)

    # ------------------------------------------------------------------ validation
    def _resolve_n_steps(self, n_steps: Any) -> int:
        if n_steps is None:
            n_steps = self.n_steps if self.n_steps is not None else self.default_n_steps
        return check_int("n_steps", n_steps, minimum=1)

    def _check_generator(self, generator: Any) -> None:
        if generator is None:
            return
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}"
            )
        if generator.device.type != self.device.type:
            raise ConfigurationError(
                f"generator must live on the sampler's device ({self.device}), got a "
                f"{generator.device.type} generator"
            )

    def _initial_x(
        self, x: Any, dim: Any, n_samples: Any, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The validated starting chains ``(B, *event_shape)`` on the sampler's device/dtype."""
        if x is None:
            if dim is None:
                dim = self._infer_dim()
                if dim is None:
                    raise ConfigurationError("dim must be provided when x is None")
            shape = _event_shape(dim)
            n = check_int("n_samples", n_samples, minimum=1)
            return torch.randn(
                (n, *shape), generator=generator, device=self.device, dtype=self.dtype
            )
        check_tensor("x", x, min_ndim=2)
        if dim is not None and _event_shape(dim) != tuple(x.shape[1:]):
            raise ShapeError(
                f"dim={dim!r} does not match x of shape {tuple(x.shape)} "
                f"(event shape {tuple(x.shape[1:])})"
            )
        n = check_int("n_samples", n_samples, minimum=1)
        if n not in (1, x.shape[0]):
            raise ShapeError(f"n_samples={n} does not match x with batch size {x.shape[0]}")
        x = x.detach().to(device=self.device, dtype=self.dtype)
        return check_finite_tensor("x", x)

    # ------------------------------------------------------------------ the loop
    def _step_fn(self, compile: bool) -> Callable[[State, SamplerContext], State]:
        if not compile:
            return self.step
        fn = self.__dict__.get("_compiled_step")
        if fn is None:
            fn = torch.compile(self.step)
            self.__dict__["_compiled_step"] = fn
        return fn

    def sample(
        self,
        x: torch.Tensor | None = None,
        dim: int | tuple[int, ...] | None = None,
        n_steps: int | None = None,
        n_samples: int = 1,
        thin: int = 1,
        return_trajectory: bool = False,
        return_diagnostics: bool = False,
        reset_schedulers: bool = True,
        *,
        model_kwargs: dict[str, Any] | None = None,
        generator: torch.Generator | None = None,
        nan_policy: str | None = None,
        nan_check_every: int | None = None,
        compile: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        r"""Run the chains for ``n_steps`` steps.

        Args:
            x: Starting chains ``(B, *event_shape)`` (cast to the sampler's device/dtype;
                never modified). ``None`` draws ``randn(n_samples, *dim)`` with ``generator``.
            dim: Event shape (int or tuple) used when ``x`` is ``None``; if given with ``x``
                it must match ``x.shape[1:]``.
            n_steps: Number of steps (default: the constructor's ``n_steps``, else
                ``default_n_steps``). Must be ``>= 1``.
            n_samples: Number of chains when ``x`` is ``None``.
            thin: Record every ``thin``-th state (``1 <= thin <= n_steps``).
            return_trajectory: Return the recorded states ``(B, n_steps // thin,
                *event_shape)`` (state after steps ``i`` with ``(i + 1) % thin == 0``)
                instead of the final state.
            return_diagnostics: Also return a dict of per-kept-step batch statistics,
                each with leading dimension ``n_steps // thin`` (see ``diagnostic_keys``).
            reset_schedulers: Reset every scheduler of the module tree first (default), so
                schedules restart at step 0 on every call.
            model_kwargs: Conditioning forwarded to the model (tensors moved to the
                sampler's device, not cast).
            generator: The only source of randomness of this call when given (must live
                on the sampler's device); ``None`` uses the global RNG.
            nan_policy: Overrides the constructor's policy for this call.
            nan_check_every: Check the chains for NaN/inf every this many steps (and after
                the last); ``None`` uses the attribute ``nan_check_every`` (default 10).
                ``1`` reports the exact first non-finite step of each chain.
            compile: Run :meth:`step` through ``torch.compile`` (compiled once per sampler
                instance; the first call pays the compilation).

        Returns:
            The final chains ``(B, *event_shape)`` or the trajectory; with
            ``return_diagnostics`` a tuple ``(output, diagnostics)``.

        Raises:
            ConfigurationError: a bad ``n_steps``, ``thin``, ``n_samples``, ``dim``,
                ``nan_policy`` or ``nan_check_every``, or neither ``x`` nor ``dim``.
            ShapeError: ``x`` is not ``(B, *event_shape)`` or disagrees with ``dim`` /
                ``n_samples``.
            NonFiniteError: ``x`` holds NaN/inf, or (``nan_policy="raise"``) chains went
                non-finite.
        """
        n_steps = self._resolve_n_steps(n_steps)
        thin = check_int("thin", thin, minimum=1)
        if thin > n_steps:
            raise ConfigurationError(f"thin must be <= n_steps ({n_steps}), got {thin}")
        policy = check_in(
            "nan_policy", self.nan_policy if nan_policy is None else nan_policy, NAN_POLICIES
        )
        check_nan = check_int(
            "nan_check_every",
            self.nan_check_every if nan_check_every is None else nan_check_every,
            minimum=1,
        )
        mk = self._prepare_model_kwargs(model_kwargs)
        self._check_generator(generator)
        x = self._initial_x(x, dim, n_samples, generator)
        scheds = [s for m in _schedulable_subtree(self) for s in m.get_schedulers().values()]
        if reset_schedulers:
            if type(self).reset_schedulers is Schedulable.reset_schedulers:
                for sched in scheds:
                    sched.reset()
            else:
                self.reset_schedulers()
        ctx = SamplerContext(
            model_kwargs=mk,
            generator=generator,
            n_steps=n_steps,
            thin=thin,
            event_shape=tuple(x.shape[1:]),
            extra={"schedulers": scheds},
            nan_policy=policy,
            nan_check_every=1 if policy == "resample" else check_nan,
        )
        with torch.no_grad(), self.autocast_context():
            out, traj, diag, windows = self._run(
                x, ctx, return_trajectory, return_diagnostics, policy, compile, check_nan
            )
        self._report_nonfinite(windows, policy, n_steps, check_nan, traj, thin)
        result = traj if traj is not None else out
        return (result, diag) if return_diagnostics else result

    def _run(
        self,
        x0: torch.Tensor,
        ctx: SamplerContext,
        want_traj: bool,
        want_diag: bool,
        policy: str,
        compile: bool,
        nan_check_every: int = 1,
    ) -> tuple[
        torch.Tensor,
        torch.Tensor | None,
        dict[str, torch.Tensor],
        tuple[torch.Tensor, torch.Tensor, list[int]],
    ]:
        """The loop; returns ``(x, trajectory, diagnostics, (alive, n_alive, ends))``.

        ``alive`` ``(B,)`` bool: finite at every check; ``n_alive`` ``(B,)``: checks passed
        while alive; ``ends``: the step count at each check (see :meth:`_report_nonfinite`).
        """
        n_steps, thin = ctx.n_steps, ctx.thin
        n_kept = n_steps // thin
        recording = want_traj or want_diag
        step_fn = self._step_fn(compile)
        state = self.init_state(x0, ctx)
        b = x0.shape[0]
        traj = (
            torch.empty((b, n_kept, *ctx.event_shape), dtype=x0.dtype, device=x0.device)
            if want_traj
            else None
        )
        # diagnostics are computed only when asked for (a trajectory alone needs none)
        diag: dict[str, torch.Tensor] | None = {} if want_diag else None
        # NaN bookkeeping at each check, two cheap updates: ``alive`` (finite at every check
        # so far) and ``n_alive`` (checks passed while alive); a chain's first non-finite
        # check is then ``ends[n_alive]`` (``ends``: the step count at each check)
        alive = torch.ones(b, dtype=torch.bool, device=x0.device)
        n_alive = torch.zeros(b, dtype=torch.long, device=x0.device)
        ends: list[int] = []
        resample = policy == "resample"
        if resample:  # restart at once: no non-finite state reaches a trajectory or a step
            nan_check_every = 1

        def check(state: State) -> State:
            ends.append(i)
            finite = _finite_rows(state["x"])
            alive.logical_and_(finite)
            n_alive.add_(alive)
            return self._restart_chains(state, ~finite, x0, ctx) if resample else state

        stride = max(1, int(self._stride(n_steps, thin, recording, ctx)))
        check_every = self.convergence_check_every
        step_schedulers, constants = self._scheduler_stepper(ctx)
        kept = calls = i = 0
        next_check = nan_check_every  # checks after every nan_check_every steps
        while i < n_steps:
            ctx.i, ctx.n = i, min(stride, n_steps - i)
            state = step_fn(state, ctx)
            if step_schedulers is not None:
                for _ in range(ctx.n):
                    step_schedulers()
            i += ctx.n
            calls += 1
            if i >= next_check or i >= n_steps:
                state = check(state)
                next_check = (i // nan_check_every + 1) * nan_check_every
            if recording and i % thin == 0 and kept < n_kept:
                self._record(state, ctx, traj, diag, kept, n_kept)
                kept += 1
            if i < n_steps and check_every > 0 and calls % check_every == 0:
                done = self.converged(state)
                if done is not None and bool(done):
                    break
        if not ends or ends[-1] != i:  # early stop between checks
            state = check(state)
        if recording and kept < n_kept:
            # early stop: every chain is frozen, so the remaining rows repeat the final state
            self._record(state, ctx, traj, diag, kept, n_kept, fill=True)
        for sched in constants:  # as if stepped i times (the value cannot change)
            sched.step_count += i
            sched.current_value = float(sched._compute_value())
        return state["x"], traj, diag if diag is not None else {}, (alive, n_alive, ends)

    def _scheduler_stepper(
        self, ctx: SamplerContext
    ) -> tuple[Callable[[], None] | None, list[ConstantScheduler]]:
        """Per-step scheduler update of one ``sample()`` call, and the schedulers it skips.

        Steps every scheduler of the module tree once, as :meth:`step_schedulers` does, from
        the list ``sample()`` collected once (``ctx.extra["schedulers"]``; the set is fixed
        while a call runs) instead of walking the module tree at every step. Plain
        :class:`ConstantScheduler` s are not stepped in the loop (their value cannot change):
        they are returned, and the loop adds the number of steps to their counters at the
        end. ``None``: nothing to step. A subclass overriding :meth:`step_schedulers` keeps
        its own method.
        """
        if type(self).step_schedulers is not Schedulable.step_schedulers:
            return self.step_schedulers, []
        scheds = ctx.extra.get("schedulers")
        if scheds is None:
            scheds = [s for m in _schedulable_subtree(self) for s in m.get_schedulers().values()]
        constants = [s for s in scheds if type(s) is ConstantScheduler]
        moving = [s for s in scheds if type(s) is not ConstantScheduler]
        if not moving:
            return None, constants

        def step_all() -> None:
            for s in moving:
                s.step()

        return step_all, constants

    def _record(
        self,
        state: State,
        ctx: SamplerContext,
        traj: torch.Tensor | None,
        diag: dict[str, torch.Tensor] | None,
        k: int,
        n_kept: int,
        fill: bool = False,
    ) -> None:
        rows = slice(k, n_kept) if fill else k
        x = state["x"]
        if traj is not None:
            traj[:, rows] = x.unsqueeze(1) if fill else x
        if diag is None:
            return
        for key, value in self.compute_diagnostics(state, ctx).items():
            buf = diag.get(key)
            if buf is None:
                buf = torch.empty((n_kept, *value.shape), dtype=value.dtype, device=value.device)
                diag[key] = buf
            buf[rows] = value

    def _report_nonfinite(
        self,
        windows: tuple[torch.Tensor, torch.Tensor, list[int]],
        policy: str,
        n_steps: int,
        nan_check_every: int = 1,
        traj: torch.Tensor | None = None,
        thin: int = 1,
    ) -> None:
        alive, n_alive, ends = windows
        if bool(alive.all()):  # the one host sync of sample() when every chain stayed finite
            return
        bad = torch.nonzero(~alive).flatten()
        idx = bad.tolist()
        bounds = [0, *ends]  # a chain's first failed check is ends[n_alive]
        passed = n_alive[bad].tolist()
        firsts = [bounds[k] + 1 for k in passed]
        lasts = [bounds[k + 1] for k in passed]
        if traj is not None and policy != "resample" and nan_check_every > 1:
            # narrow each window with the recorded states (rows after steps thin, 2 thin, ...)
            finite = _finite_rows(traj[bad].flatten(0, 1)).reshape(len(idx), -1)
            n_ok = finite.long().cumprod(1).sum(1).tolist()  # kept rows finite from the start
            for j, ok in enumerate(n_ok):
                if ok < finite.shape[1]:
                    firsts[j] = max(firsts[j], ok * thin + 1)
                    lasts[j] = min(lasts[j], (ok + 1) * thin)
        first = min(lasts)

        def where(lo: int, hi: int) -> str:
            return f"step {hi}" if lo == hi else f"steps {lo}-{hi}"

        pairs = list(zip(idx, firsts, lasts))
        shown = ", ".join(f"{i} ({where(lo, hi)})" for i, lo, hi in pairs[:10])
        more = "" if len(idx) <= 10 else f" and {len(idx) - 10} more"
        hint = (
            ""
            if all(lo == hi for _, lo, hi in pairs)
            else f"; checked every {nan_check_every} steps, pass nan_check_every=1 for the "
            "exact step"
        )
        name = type(self).__name__
        where_ = f"{len(idx)} of {alive.shape[0]} chains"
        if policy == "raise":
            err = NonFiniteError(
                f"{name} produced NaN/inf in {where_} (chain index (first non-finite step of "
                f"{n_steps})): {shown}{more}{hint}. Reduce step_size, check the model, or pass "
                "nan_policy='warn' / 'resample'",
                indices=idx,
                step=first,
            )
            err.steps = lasts  # type: ignore[attr-defined]
            err.windows = [(lo, hi) for _, lo, hi in pairs]  # type: ignore[attr-defined]
            raise err
        if policy == "warn":
            msg = (
                f"{name} produced NaN/inf in {where_} (chain index (first step)): "
                f"{shown}{more}{hint}"
            )
        else:
            msg = (
                f"{name} restarted {where_} from their starting points after they went "
                f"NaN/inf (chain index (first step)): {shown}{more}{hint}"
            )
        warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def extra_repr(self) -> str:
        return f"n_steps={self.n_steps}, nan_policy={self.nan_policy!r}"
