r"""`BaseSampler`: the sampling loop (the driver) every TorchEBM sampler plugs one step into.

Kernel vs driver, as in pyro's MCMC kernels or torchdiffeq's solvers: `BaseSampler.sample` owns
validation, the initial state, schedulers, thinning, trajectories, diagnostics, the NaN policy,
`no_grad`/autocast and `torch.compile`; a subclass implements the public hooks (`step`, optionally
`init_state`, `compute_diagnostics`, `converged`, `steps_per_call`, `infer_dim`)."""

from __future__ import annotations

import contextvars
import dataclasses
import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import torch

from torchebm.core._base_interpolant import expand_t_like_x
from torchebm.core._base_model import BaseModel, energy_gradient
from torchebm.core._module import TorchEBMModule, _normalise_device, check_bool, warn_user
from torchebm.core._schedulable import Schedulable, _subtree_schedulers
from torchebm.core._schedulers import BaseScheduler, ConstantScheduler
from torchebm.core.errors import (
    _CHECKED,
    ConfigurationError,
    NonFiniteError,
    ShapeError,
    check_energies,
    check_finite_tensor,
    check_generator,
    check_in,
    check_int,
    check_tensor,
)

__all__ = ["BaseSampler", "SamplerContext", "SamplerState", "NAN_POLICIES", "shared_field"]

#: Accepted values of `nan_policy`.
NAN_POLICIES = ("raise", "warn", "resample")

#: `torch.compile` options of `sample(compile=True)`: one graph per batch size, and no
#: Inductor FX pattern rewrites, which in torch 2.4 turn `add(x, mm(a, b), alpha=c)` into
#: `addmm(x, a, b)` and drop `alpha` (pytorch/pytorch#167313, #196577), so `x - eta * grad`
#: computed `x + grad` for Gaussian and MLP gradients. The rewrites only fuse kernels.
COMPILE_OPTIONS: dict[str, Any] = {"dynamic": False, "options": {"pattern_matcher": False}}


def shared_field(default: Any = None) -> Any:
    """A `SamplerState` field that is not per chain (a constant of the call, a time, a buffer
    shared by every chain): a restart under `nan_policy="resample"` leaves it alone."""
    return field(default=default, metadata={"per_chain": False})


@dataclass
class SamplerState:
    r"""Typed loop state: the chains `x` `(B, *event_shape)` plus, in a subclass, whatever
    else one step carries (momenta, cached energies, masks).

    Every tensor field with the batch as leading dimension is *per chain* unless declared
    with `shared_field()`: under `nan_policy="resample"` a chain that went non-finite gets
    every per-chain field back from the state `init_state` returned, so cached energies and
    gradients stay consistent with no code in the sampler (a field still `None` in that state
    has nothing to restore: set it there). Item access (`state["x"]`, `"x" in state`,
    `state.get("energy")`) reads and writes the fields; a plain dict from `init_state` works too.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class MomentumState(SamplerState):
        ...     v: torch.Tensor | None = None
        >>> s = MomentumState(x=torch.zeros(4, 2), v=torch.ones(4, 2))
        >>> s["v"].shape
        torch.Size([4, 2])
    """

    x: torch.Tensor

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and getattr(self, key, None) is not None

    def get(self, key: str, default: Any = None) -> Any:
        return default if (value := getattr(self, key, None)) is None else value


State = Any  # a SamplerState, or a dict of tensors
_FLAGS = ("return_trajectory", "return_diagnostics", "reset_schedulers", "compile")


@dataclass
class SamplerContext:
    r"""Per-call information handed to `BaseSampler.step` (one object per `sample()`).

    Attributes:
        model_kwargs: Normalised conditioning, forwarded to the model (`{}` = none).
        generator: The call's random generator (`None` = global RNG).
        n_steps: Number of steps of this call.
        thin: Thinning factor of this call.
        event_shape: Shape of one sample (`x.shape[1:]`).
        i: Steps completed before the current `step` call.
        n: Steps the current `step` call advances (see `steps_per_call`).
        nan_policy: This call's NaN policy.
        nan_check_every: Steps between NaN checks (1 under `"resample"`).
        recording: Whether this call records a trajectory or diagnostics.
        schedulers: Every scheduler of the sampler's module tree, collected once.
        gradient: `x -> grad E(x)` (`BaseSampler.gradient_fn`), `None` until asked for.
        extra: Free-form per-call values of user samplers."""

    model_kwargs: dict[str, Any]
    generator: torch.Generator | None
    n_steps: int
    thin: int
    event_shape: tuple[int, ...]
    i: int = 0
    n: int = 1
    nan_policy: str = "warn"
    nan_check_every: int = 1
    recording: bool = False
    schedulers: list[BaseScheduler] = field(default_factory=list)
    gradient: Callable[[torch.Tensor], torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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
    """`(B,)` bool: rows of `x` holding only finite values (no host sync): `max |x|` per row
    is NaN/inf exactly for rows holding one (three kernels, `isfinite(x).all(1)` takes six)."""
    flat = x if x.ndim == 2 else x.reshape(x.shape[0], -1)
    return flat.abs().amax(dim=1) < math.inf


def _finite_chains(state: State) -> torch.Tensor:
    """`(B,)` bool: chains whose `x`, and `energy` $E(x)$ and `grad` $\nabla E(x)$ when the
    state keeps them, are finite (a chain caching a NaN gradient rejects every move)."""
    finite = _finite_rows(state["x"])
    energy, grad = state.get("energy"), state.get("grad")
    if isinstance(energy, torch.Tensor) and energy.shape == finite.shape:
        finite &= energy.abs() < math.inf
    if isinstance(grad, torch.Tensor) and grad.shape == state["x"].shape:
        finite &= _finite_rows(grad)
    return finite


def _all_finite(state: State) -> bool:
    """`x`, a `(B,)` `energy` and a `grad` like `x` (if kept) are finite: one sum, one read."""
    x, energy, grad = state["x"], state.get("energy"), state.get("grad")
    total = x.sum()
    if isinstance(energy, torch.Tensor) and energy.shape == x.shape[:1]:
        total = total + energy.sum()
    if isinstance(grad, torch.Tensor) and grad.shape == x.shape:
        total = total + grad.sum()
    return math.isfinite(total.item())


def _per_chain_items(state: State, b: int) -> Iterator[tuple[str, torch.Tensor]]:
    """`(name, tensor)` of every per-chain tensor of `state` (leading dimension `b`)."""
    if isinstance(state, SamplerState):
        chain_fields = [f for f in dataclasses.fields(state) if f.metadata.get("per_chain", True)]
        items = [(f.name, getattr(state, f.name)) for f in chain_fields]
    else:
        items = list(state.items())
    for key, value in items:
        if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == b:
            yield key, value


def restart_chains(state: State, mask: torch.Tensor, start: dict[str, torch.Tensor]) -> State:
    """Put chains `mask` `(B,)` of every per-chain field back to their `start` values."""
    for key, value in list(_per_chain_items(state, mask.shape[0])):
        first = start.get(key)
        if first is not None and first.shape == value.shape:
            state[key] = torch.where(expand_t_like_x(mask, value), first, value)
    return state


class BaseSampler(Schedulable, TorchEBMModule):
    r"""Base class of samplers: owns the sampling loop, a subclass implements one step.

    A subclass implements `step` (`state -> state`; `state` is a `SamplerState` holding at
    least the chains `x` `(B, *event_shape)`) and, when it carries more than the position,
    `init_state` returning a `SamplerState` subclass. It lists its diagnostics in
    `diagnostic_keys` and computes non-standard ones in `compute_diagnostics`; `converged`,
    `steps_per_call` and `infer_dim` are optional. Scheduled hyper-parameters are
    declared with `ScheduledParameter` (or `register_scheduler`); the loop resets every
    scheduler of the module tree at the start of `sample()` and steps it once per step.
    Restarts, thinning, trajectories, diagnostics and compilation then work unchanged. A
    subclass that overrides `sample` itself (the older custom-sampler pattern) works too:
    only a class implementing neither `step` nor `sample` is abstract.

    **Divergent chains.** A chain diverged when its `x`, or its energy if the state keeps
    one (a `(B,)` field `energy`, as Metropolis samplers do), holds NaN/inf. Chains are
    checked on the device (no host sync) every `nan_check_every` steps (default 10) and
    after the last step. Metropolis samplers reject non-finite proposals and the others
    update `x` additively, so a non-finite chain stays so and a sparse check only brackets
    the step: the window `(previous check, check]`, exact with `nan_check_every=1` or
    narrowed by a recorded trajectory. At the end of `sample()` (one host read; one more checks the start) the attribute `divergent_chains`
    (`(B,)` bool) records them and the policy decides:

    * `"warn"` (default): one `RuntimeWarning` naming the chains and their steps; they are
      returned as they are (NaN/inf, never masked), as Stan, PyMC and Pyro do.
    * `"raise"`: `NonFiniteError` with `indices` (the chains), `steps` (each window's last
      step), `step` (the smallest) and `windows` (the `(first, last)` pairs).
    * `"resample"`: checks after every step, restarts each non-finite chain from its own
      starting state (fresh noise for stochastic samplers) and warns which ones it did.

    A non-finite starting `x` is always rejected (`NonFiniteError`); a chain whose starting energy
    is NaN/inf is reported "at the start" (step 0), and under `"resample"` as still divergent.

    Args:
        model: The energy model (or a flow sampler's vector field); `sampler.to()` moves it.
        dtype: Dtype of the chains when the model has no parameters (else the model's).
        device: Device of the chains when the model has no parameters or buffers (else the
            model's; a different `device` warns).
        n_steps: Default number of steps for `sample(n_steps=None)` (keyword-only);
            `None` uses `default_n_steps`.
        nan_policy: `"warn"` (default), `"raise"` or `"resample"` (keyword-only;
            `sample(nan_policy=...)` overrides it per call).

    Example:
        >>> class GradientFlow(BaseSampler):
        ...     def step(self, state, ctx):
        ...         state.x = state.x - 0.1 * self.gradient_fn(ctx)(state.x)
        ...         return state
        >>> from torchebm.core import HarmonicModel
        >>> GradientFlow(HarmonicModel()).sample(dim=2, n_samples=4, n_steps=10).shape
        torch.Size([4, 2])

    References:
        Betancourt, M. (2017). A Conceptual Introduction to Hamiltonian Monte Carlo
        (divergences). arXiv:1701.02434."""

    #: Number of steps of `sample(n_steps=None)` when the constructor got none.
    default_n_steps: ClassVar[int] = 100
    #: Diagnostics recorded by `sample(return_diagnostics=True)`. Standard keys:
    #: `"mean"`/`"var"` `(n_kept, *event_shape)`, `"energy"` `(n_kept,)`.
    diagnostic_keys: ClassVar[tuple[str, ...]] = ("mean", "var", "energy")
    #: How often (in steps) `converged` is polled; each poll is one host sync.
    convergence_check_every: ClassVar[int] = 16
    #: How often (in steps) chains are checked for NaN/inf (on the device, no sync); the
    #: last step is always checked. Assign on an instance or pass `sample(nan_check_every=)`.
    nan_check_every: int = 10

    @property
    def divergent_chains(self) -> torch.Tensor | None:
        """`(B,)` bool: the chains that went non-finite during the last `sample()` call (of
        any thread; restarted ones under `"resample"`); `None` before the first call."""
        alive = self._last_call["alive"]
        return None if alive is None else ~alive

    def __init__(
        self,
        model: Any,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
        *,
        n_steps: int | None = None,
        nan_policy: str = "warn",
    ):
        cls = type(self)
        if cls.step is BaseSampler.step and cls.sample is BaseSampler.sample:
            raise TypeError(
                f"Can't instantiate {cls.__name__}: a sampler must implement step() "
                "(or override sample())"
            )
        super().__init__(device=device, dtype=dtype)
        if not callable(model):  # checked here, not at the first sample(): None, "abc", ...
            raise TypeError(f"{cls.__name__} requires a model (a callable), got {model!r:.60}")
        self.model = model
        if device is not None and self.device != _normalise_device(self._torchebm_probe.device):
            msg = f"device={device!r} differs from the device of the model's tensors"
            warn_user(f"{cls.__name__}: {msg} ({self.device}); the chains follow the model")
        self.n_steps = None if n_steps is None else check_int("n_steps", n_steps, minimum=1)
        self.nan_policy = check_in("nan_policy", nan_policy, NAN_POLICIES)
        self._compiled_step: Callable[..., Any] | None = None
        self._last_call: dict[str, Any] = {"alive": None}  # per call: no nn.Module setattr

    # ------------------------------------------------------------------ subclass API
    def init_state(self, x: torch.Tensor, ctx: SamplerContext) -> State:
        """Build the loop state from the validated starting chains `x` `(B, *event_shape)`.

        The default state is `SamplerState(x=x)`; a sampler carrying more returns its own
        `SamplerState` subclass. `x` is the call's own copy: a step may update it in place."""
        return SamplerState(x=x)

    def step(self, state: State, ctx: SamplerContext) -> State:
        """Advance every chain by `ctx.n` steps (one, for MCMC samplers) and return the state.

        Runs under `torch.no_grad()`; read scheduled values with `get_scheduled_value`.
        Must not synchronise with the device (no `.item()`, `bool(tensor)`, printing)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    def compute_diagnostics(self, state: State, ctx: SamplerContext) -> dict[str, torch.Tensor]:
        """Per-kept-step diagnostics (batch statistics) of `state`; keys from `diagnostic_keys`.

        The base computes `"mean"`/`"var"` (population variance clamped to `[1e-10, 1e10]`,
        float16's range at most; zeros for one chain) and `"energy"` (batch mean, reusing a
        cached `state.energy`). Subclasses add their keys and call `super()`."""
        keys = self.diagnostic_keys
        x = state["x"]
        out: dict[str, torch.Tensor] = {}
        if "mean" in keys:
            out["mean"] = x.mean(dim=0)
        if "var" in keys:  # zeros for one chain; 1e10 is above float16's largest value
            var = x.var(0, unbiased=False).clamp_(1e-10, min(1e10, torch.finfo(x.dtype).max))
            out["var"] = var if x.shape[0] > 1 else torch.zeros_like(x[0])
        if "energy" in keys:
            e = state.get("energy")  # cached by the sampler, else evaluated
            out["energy"] = (self.model_energy(x, ctx.model_kwargs) if e is None else e).mean()
        return out

    def converged(self, state: State) -> torch.Tensor | None:
        """Optional early stop: a 0-d bool tensor, `True` once no chain needs more steps.

        Polled every `convergence_check_every` steps (one host sync each); `None` never
        stops. Remaining trajectory and diagnostic rows then repeat the final state."""
        return None

    def finish(self, state: State, ctx: SamplerContext) -> None:
        """Once per `sample()` call, after its last step: report what the call counted (may sync)."""

    def steps_per_call(self, state: State, ctx: SamplerContext) -> int:
        """Steps advanced by one `step` call (default 1; samplers with macro steps override).

        Called once per `sample()`. `step` advances `ctx.n` steps, fewer at the end and,
        when the call records (`ctx.recording`), up to the next recorded row."""
        return 1

    def infer_dim(self) -> Any:
        """Event shape to use when `sample()` gets neither `x` nor `dim` (`None`: none)."""
        return None

    def explain_type_error(self, err: TypeError, x: torch.Tensor, ctx: SamplerContext) -> None:
        """On a `TypeError` of the loop, raise a clearer error `from err` (default: none)."""

    # ------------------------------------------------------------------ model helpers
    def model_gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        r"""$\nabla_x E(x)$, same shape as `x`: the model's `gradient` (closed form for analytic
        models; a DDP model's module's: DDP's forward is for training), else one autograd call."""
        ddp = isinstance(model := self.model, torch.nn.parallel.DistributedDataParallel)
        grad_fn = getattr(model.module if ddp else model, "gradient", None)
        with torch.inference_mode(False), torch.enable_grad():  # an inference x is copied
            z = x.clone() if x.is_inference() else x.detach()
            if grad_fn is not None:  # grad mode, as called directly: an override may use autograd
                g = (grad_fn(z, model_kwargs=model_kwargs) if model_kwargs else grad_fn(z)).detach()
            else:  # (its result detached: a closed form over parameters keeps no graph)
                xg = z.requires_grad_(True)
                e = check_energies(type(model).__name__, model(xg, **(model_kwargs or {})), len(x))
                g = energy_gradient(e, xg, getattr(model, "__qualname__", type(model).__name__))
        if g.shape != x.shape:
            got = f"the gradient of {type(model).__name__} has shape {tuple(g.shape)}"
            raise ShapeError(f"{got}, but the chains have shape {tuple(x.shape)}")
        # in the chains' dtype, as the analytic models return it (a float64 buffer's gradient
        # made HMC's float32 chains float64 and was cut in Langevin's in-place update)
        return g if g.dtype == x.dtype else g.to(x.dtype)

    def gradient_fn(self, ctx: SamplerContext) -> Callable[[torch.Tensor], torch.Tensor]:
        r"""`x -> grad E(x)` for this call, resolved once (kept in `ctx.gradient`): the model's
        own `gradient` when it is the library's (shaped like `x`), nothing conditions it and
        `model_gradient` is not overridden; else `model_gradient`."""
        fn = ctx.gradient
        if fn is None:
            model, conditioning = self.model, ctx.model_kwargs
            if (
                not conditioning
                and isinstance(model, BaseModel)
                and getattr(type(model).gradient, "_returns_input_shape", False)
                and "gradient" not in vars(model)
                and getattr(self.model_gradient, "__func__", None) is BaseSampler.model_gradient
            ):
                fn = model.gradient_function()  # per-call set-up once (chains are batched)
            else:
                fn = partial(self.model_gradient, model_kwargs=conditioning)
            ctx.gradient = fn
        return fn

    def model_energy(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        """Energies `(B,)` of `x` under the model."""
        return self.model(x, **model_kwargs) if model_kwargs else self.model(x)

    # ------------------------------------------------------------------ validation
    def _resolve_n_steps(self, n_steps: Any) -> int:
        if n_steps is None:
            n_steps = self.n_steps if self.n_steps is not None else self.default_n_steps
        return check_int("n_steps", n_steps, minimum=1)

    def _initial_x(
        self, x: Any, dim: Any, n_samples: Any, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The validated starting chains `(B, *event_shape)` on the sampler's device/dtype."""
        if x is None:
            dim = self.infer_dim() if dim is None else dim
            if dim is None:
                raise ConfigurationError("dim must be given when x is None (cannot be inferred)")
            shape = (check_int("n_samples", n_samples, minimum=1), *_event_shape(dim))
            return torch.randn(shape, generator=generator, device=self.device, dtype=self.dtype)
        check_tensor("x", x, min_ndim=2)
        if dim is not None and _event_shape(dim) != tuple(x.shape[1:]):
            got = f"x of shape {tuple(x.shape)} (event shape {tuple(x.shape[1:])})"
            raise ShapeError(f"dim={dim!r} does not match {got}")
        n = check_int("n_samples", n_samples, minimum=1)
        if n not in (1, x.shape[0]):
            raise ShapeError(f"n_samples={n} does not match x with batch size {x.shape[0]}")
        # a contiguous copy of its own: steps may update it in place, noise follows one layout
        x = x.detach().to(*self._resolve_placement(), copy=True).contiguous()
        return check_finite_tensor("x", x)

    _model_gradient = model_gradient  # torchebm 0.8.9 names (user samplers call them)
    _model_energy = model_energy
    _init_state = _initial_x  # (0.8.9's samplers began their sample() with it)

    # ------------------------------------------------------------------ the loop
    def __getstate__(self) -> dict[str, Any]:  # pickle, deepcopy: not the compiled step, which
        return {**super().__getstate__(), "_compiled_step": None}  # calls this self's step

    def _step_fn(self, compile: bool) -> Callable[[State, SamplerContext], State]:
        """`step`, or its `torch.compile`d drop-in (its cache is on the class's `step` code)."""
        step = self._compiled_step if compile else self.step
        if step is None:
            step = self._compiled_step = torch.compile(self.step, **COMPILE_OPTIONS)
        return step

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
        y: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        r"""Run the chains for `n_steps` steps.

        Args:
            x: Starting chains `(B, *event_shape)` (cast to the sampler's device/dtype;
                never modified). `None` draws `randn(n_samples, *dim)` with `generator`.
            dim: Event shape (int or tuple) used when `x` is `None`; if given with `x`
                it must match `x.shape[1:]`.
            n_steps: Number of steps (default: the constructor's `n_steps`, else
                `default_n_steps`). Must be `>= 1`.
            n_samples: Number of chains when `x` is `None`.
            thin: Record every `thin`-th state (`1 <= thin <= n_steps`).
            return_trajectory: Return the states after every `thin`-th step,
                `(B, n_steps // thin, *event_shape)`, instead of the final state.
            return_diagnostics: Also return a dict of per-kept-step batch statistics,
                each with leading dimension `n_steps // thin` (see `diagnostic_keys`).
            reset_schedulers: Reset every scheduler of the module tree first (default).
            model_kwargs: Conditioning forwarded to the model (tensors moved to the
                sampler's device, not cast).
            y: Shorthand for `model_kwargs={"y": y}` (torchebm 0.8.9's keyword).
            generator: The only source of randomness of this call when given (must live
                on the sampler's device); `None` uses the global RNG.
            nan_policy: Overrides the constructor's policy for this call.
            nan_check_every: Check the chains for NaN/inf every this many steps (and after
                the last); `None` uses the attribute `nan_check_every` (default 10).
                `1` reports the exact first non-finite step (the policy acts at the end).
            compile: Run `step` through `torch.compile`: same maths, same results up to
                rounding (random draws may differ). It compiles per batch size and per value
                of a float hyper-parameter (a scheduled step size, FlowSampler's step widths);
                past torch's recompile limit (8, per sampler class and process) it runs eager.

        Returns:
            The final chains `(B, *event_shape)` or the trajectory, detached (no gradient
            to `x` or the model); with `return_diagnostics` a tuple `(output, diagnostics)`.

        Raises:
            ConfigurationError: a bad argument, or neither `x` nor `dim`.
            ShapeError: `x` is not `(B, *event_shape)` or disagrees with `dim`/`n_samples`.
            NonFiniteError: `x` holds NaN/inf, or chains diverged under `"raise"`."""
        n_steps = self._resolve_n_steps(n_steps)
        thin = check_int("thin", thin, minimum=1)
        if thin > n_steps:
            raise ConfigurationError(f"thin must be <= n_steps ({n_steps}), got {thin}")
        policy = self.nan_policy if nan_policy is None else nan_policy
        policy = check_in("nan_policy", policy, NAN_POLICIES)
        every = self.nan_check_every if nan_check_every is None else nan_check_every
        check_nan = check_int("nan_check_every", every, minimum=1)
        flags = (return_trajectory, return_diagnostics, reset_schedulers, compile)
        for name, flag in zip(_FLAGS, flags):  # a truthy "False" would turn trajectories on
            check_bool(name, flag)
        if y is not None:
            if model_kwargs is not None and "y" in model_kwargs:
                raise ConfigurationError("pass y either as y= or in model_kwargs, not both")
            model_kwargs = {**(model_kwargs or {}), "y": y}
        conditioning = self._prepare_model_kwargs(model_kwargs)
        check_generator(generator, self.device, of="the sampler")
        x = self._initial_x(x, dim, n_samples, generator)
        if x.dtype in (torch.float16, torch.bfloat16):  # updates below its rounding vanish
            warn_user(f"{type(self).__name__}: chains in {x.dtype} lose every update below its "
                      "rounding (a step under |x| / 256 in bfloat16: chains stall or random-walk); "
                      "use a float32 model (autocast for half compute)", RuntimeWarning)  # fmt: skip
        scheds = _subtree_schedulers(self)  # each once: one may serve two parameters
        if reset_schedulers and type(self).reset_schedulers is not Schedulable.reset_schedulers:
            self.reset_schedulers()  # a subclass's own reset
        elif reset_schedulers:
            for sched in scheds:
                sched.reset()
        ctx = SamplerContext(
            model_kwargs=conditioning,
            generator=generator,
            n_steps=n_steps,
            thin=thin,
            event_shape=tuple(x.shape[1:]),
            nan_policy=policy,
            nan_check_every=1 if policy == "resample" else check_nan,
            recording=return_trajectory or return_diagnostics,
            schedulers=scheds,
        )
        # entry checks that sync are off in the loop's context: nan_policy watches the chains
        loop = contextvars.copy_context()
        loop.run(_CHECKED.set, True)
        with torch.no_grad(), self.autocast_context():
            try:
                out, traj, diag, checks = loop.run(self._run, x, ctx, *flags[:2], compile)
            except TypeError as err:  # e.g. a model refusing the call: `explain_type_error`
                self.explain_type_error(err, x, ctx)
                raise
        self._last_call["alive"] = checks.alive
        self._report_nonfinite(checks, policy, n_steps, check_nan, traj, thin)
        result = traj if traj is not None else out
        return (result, diag) if return_diagnostics else result

    def _run(
        self, x0: torch.Tensor, ctx: SamplerContext, want_traj: bool, want_diag: bool, compile: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor], _NanChecks]:
        """The loop; returns `(x, trajectory, diagnostics, nan_checks)` (see `_NanChecks`)."""
        n_steps, thin, every = ctx.n_steps, ctx.thin, ctx.nan_check_every
        n_kept = n_steps // thin
        step_fn = self._step_fn(compile)
        if compile:  # resolved before tracing: resolved inside, two cache entries per shape
            self.gradient_fn(ctx)
        state = self.init_state(x0, ctx)
        shape = (x0.shape[0], n_kept, *ctx.event_shape)
        traj = torch.empty(shape, dtype=x0.dtype, device=x0.device) if want_traj else None
        diag: dict[str, torch.Tensor] | None = {} if want_diag else None
        checker = _NanChecks(x0.shape[0], state, ctx.nan_policy == "resample")
        stride = max(1, int(self.steps_per_call(state, ctx)))
        check_every = self.convergence_check_every
        step_schedulers, constants = self._scheduler_stepper(ctx)
        kept = calls = i = 0
        next_check = every  # checks after every nan_check_every steps
        while i < n_steps:
            ctx.i, ctx.n = i, min(stride, n_steps - i, thin - i % thin if ctx.recording else stride)
            state = step_fn(state, ctx)
            if step_schedulers is not None:
                for _ in range(ctx.n):
                    step_schedulers()
            i, calls = i + ctx.n, calls + 1
            if i >= next_check or i >= n_steps:
                state = checker(state, i, final=i >= n_steps)
                next_check = (i // every + 1) * every
            if ctx.recording and i % thin == 0 and kept < n_kept:
                self._record(state, ctx, traj, diag, kept, n_kept)
                kept += 1
            if i < n_steps and check_every > 0 and calls % check_every == 0:
                done = self.converged(state)
                if done is not None and bool(done):
                    break
        if checker.last != i:  # early stop between checks
            state = checker(state, i, final=True)
        if ctx.recording and kept < n_kept:
            # early stop: every chain is frozen, so the remaining rows repeat the final state
            self._record(state, ctx, traj, diag, kept, n_kept, fill=True)
        self.finish(state, ctx)
        for sched in constants:  # as if stepped i times (the value cannot change)
            sched.step_count += i
            sched.current_value = float(sched.compute_value())
        return state["x"], traj, diag if diag is not None else {}, checker

    def _scheduler_stepper(
        self, ctx: SamplerContext
    ) -> tuple[Callable[[], None] | None, list[ConstantScheduler]]:
        """Per-step scheduler update of one call (`None`: nothing to step) and the skipped ones.

        Steps the schedulers `sample()` collected once (`ctx.schedulers`) instead of walking
        the module tree each step; plain `ConstantScheduler`s are skipped and their counters
        advanced at the end. A subclass overriding `step_schedulers` keeps its method."""
        if type(self).step_schedulers is not Schedulable.step_schedulers:
            return self.step_schedulers, []
        constants = [s for s in ctx.schedulers if type(s) is ConstantScheduler]
        moving = [s for s in ctx.schedulers if type(s) is not ConstantScheduler]
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
            if (buf := diag.get(key)) is None:
                buf = diag[key] = value.new_empty((n_kept, *value.shape))
            buf[rows] = value

    def _report_nonfinite(
        self,
        checks: _NanChecks,
        policy: str,
        n_steps: int,
        nan_check_every: int = 1,
        traj: torch.Tensor | None = None,
        thin: int = 1,
    ) -> None:
        alive = checks.alive
        if checks.all_finite or bool(alive.all()):  # one host sync when all chains stayed finite
            return
        bad = torch.nonzero(~alive).flatten()
        idx = bad.tolist()
        if checks.window is None:  # one check: every chain failed at it
            firsts, lasts = [1] * len(idx), [checks.last] * len(idx)
        else:  # a chain's window: (its last check passed, its first check failed]
            firsts, lasts = checks.window[0][bad].add(1).tolist(), checks.window[1][bad].tolist()
        for j in (~checks.start_ok[bad]).nonzero().flatten().tolist():  # E(x0) is NaN/inf
            if firsts[j] == 1:  # and no check passed since: non-finite from the start (step 0)
                firsts[j] = lasts[j] = 0
        if traj is not None and policy != "resample" and nan_check_every > 1:
            # narrow each window with the recorded states (rows after steps thin, 2 thin, ...)
            finite = _finite_rows(traj[bad].flatten(0, 1)).reshape(len(idx), -1)
            n_ok = finite.long().cumprod(1).sum(1).tolist()  # kept rows finite from the start
            for j, ok in enumerate(n_ok):
                if ok < finite.shape[1] and lasts[j]:  # (the rows hold x: a start at step 0 stays)
                    firsts[j] = max(firsts[j], ok * thin + 1)
                    lasts[j] = min(lasts[j], (ok + 1) * thin)
        pairs = list(zip(idx, firsts, lasts))
        shown = ", ".join(
            f"{i} ({'at the start' if hi == 0 else f'step {hi}' if lo == hi else f'steps {lo}-{hi}'})"
            for i, lo, hi in pairs[:10]
        )
        more = "" if len(idx) <= 10 else f" and {len(idx) - 10} more"
        hint = f"; checked every {nan_check_every} steps, pass nan_check_every=1 for the exact step"
        hint = "" if all(lo == hi for _, lo, hi in pairs) else hint
        name = type(self).__name__
        where = f"{len(idx)} of {alive.shape[0]} chains"
        if policy == "raise":
            err = NonFiniteError(
                f"{name} produced NaN/inf in {where} (chain index (first non-finite step of "
                f"{n_steps})): {shown}{more}{hint}. Reduce step_size, check the model, or pass "
                "nan_policy='warn' (the default) / 'resample'",
                indices=idx,
                step=min(lasts),
            )
            err.steps = lasts  # type: ignore[attr-defined]
            err.windows = [(lo, hi) for _, lo, hi in pairs]  # type: ignore[attr-defined]
            raise err
        if policy == "warn":
            msg = (
                f"{name}: {where} diverged (produced NaN/inf; chain index (first step)): "
                f"{shown}{more}{hint}. They are returned as they are and recorded in "
                f"{name}.divergent_chains; reduce step_size, or pass nan_policy='raise' to stop "
                "at a divergence or 'resample' to restart divergent chains"
            )
        else:
            stuck = [] if checks.stuck is None else checks.stuck.nonzero().flatten().tolist()
            msg = (
                f"{name} restarted {where} from their starting points after they went "
                f"NaN/inf (chain index (first step)): {shown}{more}{hint}"
            )
            if stuck:  # each restart brought them back to their start
                msg += f"; chains {stuck[:10]} start where the energy or its gradient is NaN/inf: "
                msg += "they are returned there, still divergent (move those starting points)"
        warn_user(msg, RuntimeWarning)

    def extra_repr(self) -> str:
        return f"n_steps={self.n_steps}, nan_policy={self.nan_policy!r}"


class _NanChecks:
    """NaN bookkeeping of one `sample()` call: `alive` (finite at every check so far), per
    chain the step of its last check passed and of its first check failed (`window`, `None`
    after one check; memory per chain, not per check), `last` (the step of the last check, 0
    before one) and `all_finite` (`True` once the host knows that every chain stayed finite).
    Under `"resample"` it restarts non-finite chains from the start."""

    def __init__(self, b: int, state: State, resample: bool):
        self.alive = torch.empty(0)  # set by the first check (the loop ends with one)
        self.window: tuple[torch.Tensor, torch.Tensor] | None = None
        self.last, self.all_finite = 0, False
        # restart at once: no non-finite state reaches a trajectory or a step
        self.start = {k: v.clone() for k, v in _per_chain_items(state, b)} if resample else None
        self.stuck: torch.Tensor | None = None  # resample: non-finite at the end and at the start
        self.start_ok = _finite_chains(state)  # (B,): the starting energy and gradient are finite

    def __call__(self, state: State, i: int, final: bool = False) -> State:
        # the only check of the call: one sum and the host read the report makes anyway (a
        # non-finite sum, or one that overflowed, takes the per-chain mask)
        self.all_finite = final and not self.last and self.start is None and _all_finite(state)
        x = state["x"]
        finite = x.new_ones(len(x), dtype=torch.bool) if self.all_finite else _finite_chains(state)
        if not self.last:
            self.alive = finite
        else:
            if self.window is None:  # one check so far: the chains alive passed it
                passed = self.alive.long().mul_(self.last)
                self.window = (passed, torch.full_like(passed, self.last))
            self.window[1].masked_fill_(self.alive, i)  # alive until now: failed here, if at all
            self.alive.logical_and_(finite)
            self.window[0].masked_fill_(self.alive, i)
        self.last = i
        if final and self.start is not None:  # a start with a NaN/inf energy: no restart helps
            self.stuck = ~finite & ~self.start_ok
        return state if self.start is None else restart_chains(state, ~finite, self.start)
