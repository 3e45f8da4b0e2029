r"""``FlowSampler``: ODE/SDE sampling of flow-matching, diffusion and EqM vector fields."""

from __future__ import annotations

import contextvars
import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch

from torchebm.core import (
    BaseRungeKuttaIntegrator,
    BaseSampler,
    BaseSDERungeKuttaIntegrator,
    SamplerState,
    ScheduledParameter,
    expand_t_like_x,
    shared_field,
)
from torchebm.core._base_interpolant import _DIFFUSION_FORMS as _FORMS
from torchebm.core._module import forward_kwargs
from torchebm.core.errors import (
    ConfigurationError,
    ShapeError,
    check_finite,
    check_in,
    check_non_negative,
)
from torchebm.flows._utils import FIELD_CALL, check_model_object, explain_model_error
from torchebm.integrators import resolve_integrator
from torchebm.integrators._base_runge_kutta import _monotone_grid
from torchebm.integrators._checked import check_field_dtype
from torchebm.integrators._compat_089 import Hooks089, accept_089_pickle
from torchebm.interpolants import (
    CosineInterpolant,
    LinearInterpolant,
    VarianceExplodingInterpolant,
    VariancePreservingInterpolant,
    resolve_interpolant,
)
from torchebm.samplers._compat_089 import flow_overrides
from torchebm.samplers._implicit_solves import (
    add_unconverged,
    unconverged_counter,
    warn_unconverged,
)

if TYPE_CHECKING:
    from torchebm.core import SamplerContext

__all__ = ["FlowSampler", "PredictionType", "FlowState"]


class PredictionType(enum.Enum):
    """What the model predicts: the noise $x_0$, the score, or the velocity."""

    NOISE = enum.auto()
    SCORE = enum.auto()
    VELOCITY = enum.auto()


_PREDICTIONS = {
    "velocity": PredictionType.VELOCITY,
    "score": PredictionType.SCORE,
    "noise": PredictionType.NOISE,
}
_LAST_STEPS = ("Mean", "Euler", "Tweedie", None)

#: Distance from the singular time ends that ``sample_eps=0`` means wherever the grid needs
#: one (SiT's ``sample_eps`` for these paths): at $\alpha = 0$ the SBDM diffusion
#: $D \propto \dot\alpha/\alpha$ and the score -> velocity conversion are infinite, at
#: $\sigma = 0$ the velocity/noise -> score conversions are.
_SINGULAR_END_EPS = 1e-3
_SINGULAR_END_PATHS = (LinearInterpolant, CosineInterpolant, VariancePreservingInterpolant)
_BUILT_IN_PATHS = (*_SINGULAR_END_PATHS, VarianceExplodingInterpolant)


def _singular_ends(interpolant: Any) -> bool:
    r"""Whether a path has the linear path's singular ends, $\alpha(0) = 0$ (where the SBDM
    diffusion and the score -> velocity conversion divide by $\alpha$) or $\sigma(1) = 0$
    (the velocity/noise -> score conversions divide by $\sigma$), read off the path's own
    coefficients at the two ends (float64, CPU)."""
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    alpha = interpolant.compute_alpha_t(ends)[0]
    sigma = interpolant.compute_sigma_t(ends)[0]
    return bool(alpha[0] == 0) or bool(sigma[1] == 0)


_UNSET: Any = object()

_INTEGRATOR_HINT = "choose the integrator in the constructor: FlowSampler(..., integrator='dopri5')"
_REMOVED_SAMPLE_KWARGS = {
    "mode": "pass mode='ode' or mode='sde' to the FlowSampler constructor",
    "shape": "use n_samples=<batch> and dim=<event shape tuple>",
    "ode_method": _INTEGRATOR_HINT,
    "sde_method": _INTEGRATOR_HINT,
    "method": _INTEGRATOR_HINT,
    "atol": "set tolerances on the integrator: integrator=Dopri5Integrator(atol=..., rtol=...)",
    "rtol": "set tolerances on the integrator: integrator=Dopri5Integrator(atol=..., rtol=...)",
    "reverse": "pass reverse=True to the FlowSampler constructor",
    "diffusion_form": "pass diffusion_form= to the FlowSampler constructor (mode='sde')",
    "diffusion_norm": "pass diffusion_norm= to the FlowSampler constructor (mode='sde')",
    "last_step": "pass last_step= to the FlowSampler constructor (mode='sde')",
    "last_step_size": "pass last_step_size= to the FlowSampler constructor (mode='sde')",
    "num_steps": "use n_steps=",
    "z": "pass the starting noise as x=",
}


class _GridRows(Sequence):
    """Row ``i`` of tensors sharing a leading grid dimension: the row's view for one tensor,
    a tuple of views for several. The views are made ``chunk`` rows at a time and only the
    current chunk's are held: all of a long grid's views at once held 0.6-2.5 kB a grid step
    (100,000 SDE steps: 240 MiB)."""

    def __init__(self, *tensors: torch.Tensor, chunk: int = 1024):
        self.tensors, self.chunk = tensors, chunk
        self.start, self.rows = -1, cast(Sequence[Any], ())

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, i):  # type: ignore[override]  # int indices only
        if i < 0:
            i += len(self)
        start = i - i % self.chunk
        if start != self.start:
            ends = [t[start : start + self.chunk].unbind(0) for t in self.tensors]
            self.start, self.rows = start, ends[0] if len(ends) == 1 else list(zip(*ends))
        return self.rows[i - start]


@dataclass
class FlowState(SamplerState):
    """Loop state of `FlowSampler`: the points and the time grid of the call.

    Attributes:
        x: Points `(B, *event_shape)`.
        t: Interpolant time of `x` (0-d; after an SDE last step `t1 + last_step_size`).
        times: The grid `t_0 .. t_n` as Python floats (`n_steps + 1`; decreasing with
            `reverse=True`).
        grid: The same grid as a tensor `(n_steps + 1,)` on the points' device and dtype.
        t_batch: `grid[i]` expanded to `(B,)`, per grid time (a sequence): the `t`
            handed to the integrator (and from it to the model) at step `i`.
        drift: The call's drift `drift(x, t)`: the probability-flow velocity (ODE) or
            $v + D s$ (SDE) at any time `t`.
        sde_table: SDE: per grid time `(a, b, D)` (0-d tensors in a sequence, see
            `FlowSampler._sde_table`), the drift $a f(x, t_i) + b x$ and the diffusion at
            `t_i`; `None` in ODE mode.
        grid_drift: SDE: whether the integrator evaluates the drift only at the start of
            each step (Euler-Maruyama), so the table drift of grid time `t_i` serves it.
        n_unconverged: A fixed-step integrator with an implicit stage: `(B,)` int64, per
            chain, the steps of the call whose implicit solve did not converge (shared);
            `None` otherwise.
    """

    t: torch.Tensor | None = shared_field()
    times: list[float] = field(default_factory=list, metadata={"per_chain": False})
    grid: torch.Tensor | None = shared_field()
    t_batch: Sequence[torch.Tensor] = field(default_factory=list, metadata={"per_chain": False})
    drift: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = shared_field()
    sde_table: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = shared_field()
    grid_drift: bool = shared_field(False)
    n_unconverged: torch.Tensor | None = shared_field()


def _parse_prediction(prediction: Any) -> PredictionType:
    if isinstance(prediction, PredictionType):
        return prediction
    return _PREDICTIONS[check_in("prediction", prediction, tuple(_PREDICTIONS))]


def _uniform_time(t: torch.Tensor) -> torch.Tensor:
    """The 0-d time of a batch-uniform ``t`` (a scalar expanded to ``(B,)``), else ``t``.

    The sampler's grid times are uniform over the batch: interpolant coefficients are then
    computed once per step (0-d) instead of once per sample, with the same values.
    """
    if isinstance(t, torch.Tensor) and t.ndim == 1 and t.shape[0] > 0 and t.stride(0) == 0:
        return t[0]
    return t


def _refuse_resample(policy: str) -> None:
    """``nan_policy="resample"`` restarts a row from its start mid-path: wrong for a flow."""
    if policy == "resample":
        raise ConfigurationError(
            "nan_policy='resample' does not apply to FlowSampler: the batch shares one time "
            "grid, so a row restarted from its start noise would be integrated over the rest "
            "of the grid only (a wrong sample); use nan_policy='warn' (the default) or 'raise'"
        )


class FlowSampler(Hooks089, BaseSampler):
    r"""Generate samples by integrating a learned vector field from noise (t = 0) to data (t = 1).

    The model is any module ``model(x, t, **model_kwargs)`` (``t`` of shape ``(B,)``)
    returning a tensor shaped like ``x``: a velocity, a score or a noise prediction
    (``prediction``). With $(A, B_v)$ = ``interpolant.compute_drift(x, t)`` the
    probability-flow velocity is

    * velocity: $v = f(x, t)$ (with ``negate_velocity``: $v = -f(x, 0)$, for EqM fields,
      time-invariant and pointing from data to noise);
    * score: $v = -A + B_v\,s(x, t)$;
    * noise: $s = -\hat x_0 / \max(\sigma_t, 10^{-8})$ (`noise_to_score`), then as for the score.

    Without ``x``, ``sample()`` starts from $\sigma(t_0)\,\xi$ with $\xi$ standard normal:
    the path's noise at $t_0$ ($\mathcal N(0, I)$ on the linear and cosine paths,
    $\mathcal N(0, \sigma_{max}^2 I)$ on the VE paths, where standard normal noise gave
    samples 80x too narrow).

    **ODE mode** integrates $dx/dt = v(x, t)$ over the grid
    ``linspace(t0, t1, n_steps + 1)`` with any Runge-Kutta integrator: fixed-step ones take
    one step per grid interval; adaptive ones (default ``dopri5``) integrate adaptively
    between recorded grid times (between ``t0`` and ``t1`` at once when nothing is
    recorded), so ``return_trajectory``/``thin``/diagnostics work with them too. Each
    recorded interval is then a solve of its own (at least one accepted step, about seven
    evaluations for ``dopri5``): recording 500 times took 5,306 evaluations of a small MLP
    field where the unrecorded solve took 37, and the result is more accurate (shorter
    steps), not the same.
    ``reverse=True`` maps data to noise by integrating the same ODE backwards, over the
    decreasing grid ``t1 -> t0``, evaluating the field at the current (decreasing) time.

    **SDE mode** integrates
    $dx = [v + D(t)\,s]\,dt + \sqrt{2D(t)}\,dW$ with
    $D$ = ``interpolant.compute_diffusion(x, t, diffusion_form, diffusion_norm)`` and a
    fixed-step SDE integrator (default Euler-Maruyama), then applies ``last_step`` at
    ``t1``: ``"Mean"`` $x + (v + D s)\Delta$, ``"Euler"`` $x + v\Delta$,
    ``"Tweedie"`` $(x + \sigma^2 s)/\alpha$, ``None`` nothing; with
    $\Delta$ = ``last_step_size``. The default ``"SBDM"`` diffusion is SiT's $D = B_v$
    (the reverse diffusion of the path's forward SDE; $(1-t)/t$ on the linear path), which
    vanishes at the data end. A last step stops the chain at $t_1 = 1 - \Delta$, where the
    path still carries noise $\sigma(t_1)$ (0.04 on the linear path): data concentrated
    at that scale come out biased (a $\mathcal N(0, 0.1^2)$ law gives std 0.077 with
    ``"Mean"``, 0.093 with ``"Euler"``, 250 steps); ``last_step=None`` integrates to $1 -$
    ``sample_eps`` (0.100). ``"Mean"`` drops the last interval's noise, $2D(t_1)\Delta$ of
    variance: 0.0033 on the linear path, 0.036 on the VP path ($D = \beta_t/2$; std 0.456
    for a $\mathcal N(0, 0.5^2)$ law), as DDPM's noise-free last step does.

    Time interval ``(t0, t1)``: ``(0, 1)`` except: VP interpolant
    $t_1 = 1 - \text{sample\_eps}$ (ODE, or SDE with ``last_step_size == 0``) else
    $1 - \text{last\_step\_size}$; linear/cosine with a score/noise prediction or in
    SDE mode: $t_0$ = ``sample_eps`` when (SDE with ``"SBDM"``) or the prediction is
    not a velocity, and $t_1$ as for VP; a custom interpolant with $\alpha(0) = 0$ or
    $\sigma(1) = 0$ (read off its coefficients) is treated as the linear path; any other
    path (VE, EDM, a custom one finite at both ends): $t_1 = 1 - \text{last\_step\_size}$
    in SDE mode (so the last step ends at $t = 1$;
    before, the chain ran to $t = 1$ and the last step went on to $1 + \Delta$, outside
    the path). Where the interval keeps a distance from a time
    end (SDE mode, or a score/noise prediction, on these paths), ``sample_eps=0``
    (the default) means $10^{-3}$: the SBDM diffusion and the score -> velocity conversion
    are infinite at $t = 0$ of the linear and cosine paths, and the velocity/noise -> score
    conversions at $t = 1$ (from $t_0 = 0$ the default SDE returned finite samples with 8x
    the target's standard deviation; torchebm 0.8.9 too).

    Args:
        model: The vector field ``model(x, t, **model_kwargs)``.
        mode: ``"ode"`` or ``"sde"``.
        interpolant: Name (``"linear"``, ``"cosine"``, ``"vp"``, ...) or instance.
        prediction: ``"velocity"``, ``"score"``, ``"noise"`` or a [`PredictionType`][torchebm.samplers.PredictionType].
        train_eps: Stored for symmetry with the training losses (unused by sampling).
        sample_eps: Distance kept from singular time ends (float in [0, 0.5) or scheduler;
            0 means $10^{-3}$ at an end that is singular, see above). It has no effect where
            no end is singular: the linear and cosine paths under the ODE with a velocity
            prediction, the VE/EDM paths always (the interval is then the whole path), and
            the VP path in SDE mode with the default ``last_step``.
        negate_velocity: Negate a velocity prediction and call the model at $t = 0$
            (``prediction="velocity"`` only; with another a ``ConfigurationError``): an
            Equilibrium Matching field is time-invariant, and `EquilibriumMatchingLoss`
            (``time_invariant=True``, its default) trains it at $t = 0$, as `EqMEnergy`
            evaluates it (torchebm 0.8.9 did the same). The integration still runs over the
            time grid; only the model's time input is 0. This is for a field trained with
            ``energy_type="none"`` (the loss's default): a model trained with an explicit
            energy (``"dot"``, ``"l2"``, ...) learns the gradient of that energy, not
            ``f`` (samples of a ``"dot"`` model landed 0.58 off the data, 16 times its
            spread); sample it with `GradientDescentSampler` on
            ``EqMEnergy(model, energy_type)``. Nor is it the counterpart of
            ``FlowMatchingLoss(negate_velocity=True)``, whose time-dependent $-u_t$ model is
            sampled as ``FlowSampler(lambda x, t: -model(x, t))``.
        reverse: ODE only: integrate data -> noise.
        diffusion_form: SDE only (default ``"SBDM"``); one of the forms of
            [`compute_diffusion`][torchebm.core.BaseInterpolant.compute_diffusion].
        diffusion_norm: SDE only (default 1.0).
        last_step: SDE only: ``"Mean"`` (default), ``"Euler"``, ``"Tweedie"`` or ``None``.
        last_step_size: SDE only: in [0, 1) with ``sample_eps + last_step_size < 1``
            (default 0.04; forced to 0 with ``last_step=None``).
        dtype: Chain dtype when the model has no parameters.
        device: Chain device when the model has no parameters.
        integrator: ODE: any Runge-Kutta integrator (default ``"dopri5"``); SDE: a
            fixed-step SDE integrator (default ``"euler_maruyama"``). A fixed-step one with
            an implicit stage (``"backward_euler_maruyama"``) has its `solver_converged`
            counted per chain at each step; ``sample()`` ends with one ``RuntimeWarning`` if
            a solve did not converge (a truncated iterate: biased samples).
        n_steps: Default number of grid steps (class default 50 for ODE, 250 for SDE).
        nan_policy: ``"warn"`` (default: divergent chains are reported and recorded in
            ``divergent_chains``) or ``"raise"`` (see `BaseSampler`); ``"resample"`` is a
            ``ConfigurationError`` (the batch shares one time grid: a row restarted from its
            start noise would integrate over the rest of the grid only). An
            adaptive integrator, whose one step size serves the whole batch, cannot step
            past a NaN/inf drift: it raises ``NonFiniteError`` naming the rows under
            every policy.

    Diagnostics: ``"mean"``, ``"var"`` ``(n_kept, *event_shape)`` and ``"t"``
    ``(n_kept,)`` (the interpolant time of each kept state; ``t1 + last_step_size`` for a
    final SDE state after its last-step correction).

    Example:
        >>> field = lambda x, t: -x  # any callable (x, t) -> tensor shaped like x
        >>> fs = FlowSampler(field, integrator="rk4")
        >>> fs.sample(x=torch.ones(3, 2), n_steps=20).shape
        torch.Size([3, 2])

    References:
        Lipman, Y. et al. (2023). Flow Matching for Generative Modeling. ICLR.
        Song, Y. et al. (2021). Score-Based Generative Modeling through Stochastic
        Differential Equations. ICLR.
        Ma, N. et al. (2024). SiT: Exploring Flow and Diffusion-based Generative Models with
        Scalable Interpolant Transformers. ECCV.
    """

    #: Default number of grid steps in ``mode="sde"``.
    default_sde_n_steps: ClassVar[int] = 250
    diagnostic_keys = ("mean", "var", "t")
    __setstate__ = accept_089_pickle("nan_policy", flow_overrides)  # 0.8.9 whole pickles

    _retired_hooks = {
        **dict.fromkeys(
            ("_get_drift", "_get_score", "_sde_dynamics", "_grid_and_drift"),
            "the drift and score follow `prediction` and the interpolant; wrap the model to "
            "change them, or override `step`",
        ),
        **dict.fromkeys(("_record_stats", "_batch_stats"), "override `compute_diagnostics`"),
    }

    def _set_prediction(self, value: Any) -> None:
        self._prediction = _parse_prediction(value)

    prediction = property(lambda self: self._prediction, _set_prediction)
    """What the model predicts, a `PredictionType`; an assigned name (``"velocity"``,
    ``"score"``, ``"noise"``) or member is parsed and checked as the constructor does (a
    string stored as it was matched no branch and sampled as a noise prediction)."""
    prediction_type = property(lambda self: self._prediction, _set_prediction)
    """``prediction`` under torchebm 0.8.9's name (reads and writes it)."""

    def __init__(
        self,
        model: Any,
        mode: str = "ode",
        interpolant: Any = "linear",
        prediction: Any = "velocity",
        train_eps: Any = 0.0,
        sample_eps: Any = 0.0,
        negate_velocity: bool = False,
        reverse: bool = False,
        diffusion_form: str | None = None,
        diffusion_norm: float | None = None,
        last_step: str | None = _UNSET,
        last_step_size: float | None = None,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
        integrator: Any = None,
        *,
        n_steps: int | None = None,
        nan_policy: str = "warn",
    ):
        check_model_object("FlowSampler", model)
        super().__init__(**forward_kwargs(locals(), super().__init__))
        if not callable(model):
            raise TypeError(f"model must be callable as model(x, t), got {type(model).__name__}")
        self.mode = check_in("mode", mode, ("ode", "sde"))
        self.interpolant = resolve_interpolant(interpolant, default="linear", owner="FlowSampler")
        self.prediction = _parse_prediction(prediction)
        self._register_param("train_eps", train_eps, non_negative=True)
        self.sample_eps = sample_eps  # in [0, 0.5): t0 = eps < t1 = 1 - eps
        for name, flag in (("negate_velocity", negate_velocity), ("reverse", reverse)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        self.negate_velocity = negate_velocity
        self._check_negate_velocity()
        self.reverse = reverse
        given = [
            name
            for name, value in (
                ("diffusion_form", diffusion_form),
                ("diffusion_norm", diffusion_norm),
                ("last_step", None if last_step is _UNSET or last_step is None else "given"),
                ("last_step_size", last_step_size),
            )
            if value is not None
        ]
        sde = self.mode == "sde"
        if not sde:
            if given:
                verb = "applies" if len(given) == 1 else "apply"  # None: the ODE's no last step
                raise ConfigurationError(f"{', '.join(given)} only {verb} to mode='sde'")
            self.diffusion_form, self.diffusion_norm = None, None
            self.last_step, self.last_step_size = None, 0.0
        else:
            if reverse:
                raise ConfigurationError("reverse=True is only supported with mode='ode'")
            self.diffusion_form = check_in(
                "diffusion_form", "SBDM" if diffusion_form is None else diffusion_form, _FORMS
            )
            self.diffusion_norm = _non_negative("diffusion_norm", diffusion_norm, 1.0)
            self.last_step = "Mean" if last_step is _UNSET else last_step
            check_in("last_step", self.last_step, _LAST_STEPS)
            size = 0.04 if last_step_size is None else _check_last_step_size(last_step_size)
            self.last_step_size = 0.0 if self.last_step is None else size
        self.integrator = resolve_integrator(
            integrator,
            default="euler_maruyama" if sde else "dopri5",
            family=BaseSDERungeKuttaIntegrator if sde else BaseRungeKuttaIntegrator,
            owner="FlowSampler" if not sde else "FlowSampler(mode='sde')",
            device=self.device,
            dtype=self.dtype,
        )
        if sde and self._adaptive:
            raise ConfigurationError(
                f"mode='sde' needs a fixed-step integrator, got the adaptive "
                f"{type(self.integrator).__name__}"
            )
        self._check_interval()  # sample_eps + last_step_size < 1 (checked again per call)
        _refuse_resample(self.nan_policy)

    def _check_negate_velocity(self) -> None:
        """``negate_velocity`` with a velocity prediction only (at construction and per call:
        either may have been assigned since)."""
        if self.negate_velocity and self.prediction is not PredictionType.VELOCITY:
            raise ConfigurationError(
                "negate_velocity=True is for an Equilibrium Matching velocity field (negated, "
                f"called at t = 0), got prediction={self.prediction.name.lower()!r}: a score "
                "or noise prediction is time-dependent and not negated"
            )

    def _check_mode(self) -> None:
        """``mode`` as the constructor checks it, and the one the sampler was built for (its
        integrator and SDE settings are chosen by it at construction)."""
        mode = check_in("mode", self.mode, ("ode", "sde"))
        built = "ode" if self.diffusion_form is None else "sde"
        if mode != built:
            raise ConfigurationError(
                f"mode={mode!r} was assigned to a FlowSampler built with mode={built!r}: the "
                "mode chooses the integrator and the SDE settings at construction; build a "
                f"new FlowSampler(..., mode={mode!r})"
            )

    @property
    def default_n_steps(self) -> int:  # type: ignore[override]
        """Grid steps of `sample(n_steps=None)`: 50 in ODE mode, `default_sde_n_steps` in SDE."""
        return self.default_sde_n_steps if self.mode == "sde" else 50

    # ------------------------------------------------------------------ properties
    train_eps = ScheduledParameter(non_negative=True)
    """Current ``train_eps`` (unused by sampling)."""

    sample_eps = ScheduledParameter(non_negative=True, below=0.5)
    """Current ``sample_eps``."""

    @property
    def last_step_size(self) -> float:
        r"""SDE last-step size $\Delta$ in [0, 1) (0 in ODE mode and with ``last_step=None``).

        Assigning checks the range; the grid ends at $t_1 = 1 - \Delta$ when $\Delta > 0$, so
        ``sample()`` also needs $t_0 < t_1$ (see `_check_interval`).
        """
        return self._last_step_size

    @last_step_size.setter
    def last_step_size(self, value: float) -> None:
        self._last_step_size = _check_last_step_size(value)

    @property
    def _adaptive(self) -> bool:
        return getattr(self.integrator, "error_weights", None) is not None

    # ------------------------------------------------------------------ fields
    def _check_interval(self) -> tuple[float, float]:
        """The integration interval ``(t0, t1)`` (see the class docstring), from the current
        ``sample_eps`` (a scheduler's value when ``sample()`` builds its grid) and
        ``last_step_size``.

        Raises:
            ConfigurationError: unless ``0 <= t0 < t1 <= 1`` (e.g. ``sample_eps +
                last_step_size >= 1`` in SDE mode would run the grid backwards).
        """
        eps, delta = self.sample_eps, self.last_step_size
        t0, t1 = self._interval(eps, delta)
        if not 0.0 <= t0 < t1 <= 1.0:  # NaN fails too
            raise ConfigurationError(
                f"sample_eps={eps!r} and last_step_size={delta!r} give the time interval "
                f"(t0, t1) = ({t0:.6g}, {t1:.6g}) of {self.interpolant!r} (mode={self.mode!r}), "
                "which must satisfy 0 <= t0 < t1 <= 1: sample_eps must be in [0, 0.5) and "
                "last_step_size in [0, 1) with sample_eps + last_step_size < 1"
            )
        return t0, t1

    def _interval(self, eps: float, delta: float) -> tuple[float, float]:
        """``(t0, t1)`` for ``sample_eps=eps`` and ``last_step_size=delta``, unchecked."""
        interp, sde = self.interpolant, self.mode == "sde"
        score_needed = sde or self.prediction is not PredictionType.VELOCITY
        # a path of another class counts as linear-like when it has the same singular ends
        linear_like = isinstance(interp, (LinearInterpolant, CosineInterpolant)) or (
            not isinstance(interp, _BUILT_IN_PATHS) and _singular_ends(interp)
        )
        if eps == 0 and score_needed and (linear_like or isinstance(interp, _SINGULAR_END_PATHS)):
            eps = _SINGULAR_END_EPS  # the default 0 would start or end on a singular time
        t1_eps = eps if (not sde or delta == 0) else delta
        if isinstance(interp, VariancePreservingInterpolant):
            return 0.0, 1.0 - t1_eps
        if linear_like and (self.prediction is not PredictionType.VELOCITY or sde):
            sbdm = sde and self.diffusion_form == "SBDM"
            t0 = eps if (sbdm or self.prediction is not PredictionType.VELOCITY) else 0.0
            return t0, 1.0 - t1_eps
        # any other path (VE, EDM, a custom one that is finite at both ends): no singular
        # end, but a last step still needs its room
        return 0.0, 1.0 - (delta if sde else 0.0)

    def _model_out(self, x: torch.Tensor, t: torch.Tensor, conditioning: dict) -> torch.Tensor:
        if self.negate_velocity:  # an EqM field: time-invariant, trained at t = 0
            t = torch.zeros_like(t)
        out = self.model(x, t, **conditioning) if conditioning else self.model(x, t)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ShapeError(
                f"model(x, t) must return a tensor of shape {tuple(x.shape)}, got {got}"
            )
        if out.dtype != x.dtype:  # it would promote (or truncate) the chains silently
            check_field_dtype("model(x, t)", out, x.dtype)
        return out

    def _velocity_or_score(
        self, x: torch.Tensor, t: torch.Tensor, conditioning: dict
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(velocity, score)`` from one model call: the velocity of a velocity prediction
        (score ``None``) or the score of a score/noise prediction (velocity ``None``)."""
        out = self._model_out(x, t, conditioning)
        if self.prediction is PredictionType.VELOCITY:
            return (-out if self.negate_velocity else out), None
        if self.prediction is PredictionType.SCORE:
            return None, out
        return None, self.interpolant.noise_to_score(out, x, _uniform_time(t))

    def _velocity(self, x: torch.Tensor, t: torch.Tensor, conditioning: dict) -> torch.Tensor:
        """Probability-flow velocity (one model call)."""
        v, score = self._velocity_or_score(x, t, conditioning)
        if v is not None:
            return v
        return self.interpolant.score_to_velocity(cast(torch.Tensor, score), x, _uniform_time(t))

    def _velocity_and_score(
        self, x: torch.Tensor, t: torch.Tensor, conditioning: dict
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Probability-flow velocity and score (one model call)."""
        v, score = self._velocity_or_score(x, t, conditioning)
        tc = _uniform_time(t)
        if v is not None:
            return v, self.interpolant.velocity_to_score(v, x, tc)
        score = cast(torch.Tensor, score)
        return self.interpolant.score_to_velocity(score, x, tc), score

    def _ode_drift(self, conditioning: dict):
        def drift(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self._velocity(x, t, conditioning)

        return drift

    def _diffusion(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.interpolant.compute_diffusion(
            x, _uniform_time(t), cast(str, self.diffusion_form), cast(float, self.diffusion_norm)
        )

    def _sde_drift(self, conditioning: dict):
        """The SDE drift ``v + D s`` at any time ``t``."""

        def drift(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            v, score = self._velocity_and_score(x, t, conditioning)
            return torch.addcmul(v, self._diffusion(x, t), score)

        return drift

    def _grid_drift(self, conditioning: dict, a: torch.Tensor, b: torch.Tensor):
        """The SDE drift at one grid time $t_i$, from its row ``(a, b)`` of `_sde_table`:
        ``a f(x, t_i) + b x`` (one model call, two tensor operations). Valid only when the
        integrator calls it at $t_i$, which it receives explicitly as ``t``."""

        def drift(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return torch.addcmul(self._model_out(x, t, conditioning) * a, x, b)

        return drift

    def _sde_table(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Per grid time: ``(a, b, D)`` with SDE drift $v + D s = a\,f(x, t) + b\,x$.

        The score and the velocity of a Gaussian path are affine in (model output, x) with
        time-only coefficients, so the drift is too. The coefficients come from the
        interpolant's own conversions evaluated on unit inputs for the whole grid at once
        (in float64), instead of some forty scalar operations per step; ``D`` is the
        diffusion at each grid time.
        """
        t = grid.to(torch.float64)
        col = t.reshape(-1, 1)
        zero, one = torch.zeros_like(col), torch.ones_like(col)
        interp = self.interpolant
        d = interp.compute_diffusion(
            zero, t, cast(str, self.diffusion_form), cast(float, self.diffusion_norm)
        ).reshape(-1)
        if self.prediction is PredictionType.VELOCITY:
            # s = c1 v + c2 x, so v + D s = (1 + D c1) v + D c2 x
            c1 = interp.velocity_to_score(one, zero, t).reshape(-1)
            c2 = interp.velocity_to_score(zero, one, t).reshape(-1)
            a = (1 + d * c1) * (-1.0 if self.negate_velocity else 1.0)
            b = d * c2
        else:
            # v = e1 s + e2 x, so v + D s = (e1 + D) s + e2 x, with s = k f(x, t)
            e1 = interp.score_to_velocity(one, zero, t).reshape(-1)
            e2 = interp.score_to_velocity(zero, one, t).reshape(-1)
            k: Any = 1.0
            if self.prediction is PredictionType.NOISE:  # s = k f, k = -1 / sigma (floored)
                k = interp.noise_to_score(one, zero, t).reshape(-1)
            a, b = (e1 + d) * k, e2
        dtype = grid.dtype
        return a.to(dtype), b.to(dtype), d.to(dtype)

    # ------------------------------------------------------------------ loop hooks
    def steps_per_call(self, state: FlowState, ctx: SamplerContext) -> int:
        """1 for fixed-step integrators; an adaptive one integrates between recorded times.

        Args:
            state: The call's `FlowState`.
            ctx: This call's [`SamplerContext`][torchebm.core.SamplerContext] (``thin``, ``recording``, ``n_steps``).
        """
        if not self._adaptive:
            return 1
        return ctx.thin if ctx.recording else ctx.n_steps

    def init_state(self, x: torch.Tensor, ctx: SamplerContext) -> FlowState:
        r"""The grid of this call (host floats and a tensor) and its drift, in a `FlowState`.

        Default noise (``sample(x=None)``, forward time) is scaled to the path's noise
        level: ``x`` `(B, *event)` standard normal becomes $\sigma(t_0)\,x$.

        Args:
            x: Start points `(B, *event)`.
            ctx: This call's [`SamplerContext`][torchebm.core.SamplerContext] (``n_steps``, ``model_kwargs``).
        """
        self._check_mode()  # assigned since construction?
        self._check_negate_velocity()
        t0, t1 = self._check_interval()
        _refuse_resample(ctx.nan_policy)  # this call's policy (an argument, or assigned)
        if _NOISE_START.get():
            x = self._scale_to_prior(x, t0)
        n = ctx.n_steps
        times = [t0 + (t1 - t0) * k / n for k in range(n)] + [t1]
        if self.reverse:
            times.reverse()
        grid = torch.tensor(times, device=x.device, dtype=x.dtype)
        if self._adaptive:  # once here: the adaptive solves in the loop skip the check
            _monotone_grid(grid)  # (a half-precision grid may round two times together)
        conditioning = ctx.model_kwargs
        state = FlowState(x=x, t=grid[0], times=times, grid=grid)
        if not self._adaptive:  # the integrator's t at each step: views, made once
            state.t_batch = _GridRows(grid.unsqueeze(1).expand(-1, x.shape[0]))
            state.n_unconverged = unconverged_counter(self.integrator, x)
        if self.mode == "sde":
            a, b, d = self._sde_table(grid)
            state.sde_table = _GridRows(a, b, d)
            state.drift = self._sde_drift(conditioning)
            state.grid_drift = tuple(getattr(self.integrator, "tableau_c", ())) == (0.0,)
        else:
            state.drift = self._ode_drift(conditioning)
        return state

    def _scale_to_prior(self, x: torch.Tensor, t0: float) -> torch.Tensor:
        r"""Standard normal ``x`` `(B, *event)` times $\sigma(t_0)$: a sample of
        $\mathcal N(0, \sigma(t_0)^2 I)$, the path's law at $t_0$ less its $\alpha(t_0)\,x_1$
        part (unchanged where $\sigma(t_0) = 1$: linear and cosine paths from $t_0 = 0$)."""
        t = torch.tensor(t0, dtype=torch.float64)
        sigma = float(self.interpolant.compute_sigma_t(t)[0])
        return x if sigma == 1.0 else x * sigma

    def step(self, state: FlowState, ctx: SamplerContext) -> FlowState:
        x, i, n = state.x, ctx.i, ctx.n
        times, grid = state.times, cast(torch.Tensor, state.grid)
        drift = cast(Callable, state.drift)
        if self._adaptive:
            x = self.integrator.integrate(
                {"x": x}, abs(times[i + 1] - times[i]), n, drift=drift, t=grid[i : i + n + 1]
            )["x"]
        elif state.sde_table is not None:
            a, b, d = state.sde_table[i]
            x = self.integrator.step(
                {"x": x},
                times[i + 1] - times[i],
                drift=self._grid_drift(ctx.model_kwargs, a, b) if state.grid_drift else drift,
                diffusion=d,  # D(t_i), as the callable would give
                t=state.t_batch[i],
                generator=ctx.generator,
            )["x"]
        else:
            x = self.integrator.step(
                {"x": x}, times[i + 1] - times[i], drift=drift, t=state.t_batch[i]
            )["x"]
        if state.n_unconverged is not None:  # a fixed step with an implicit stage
            add_unconverged(state.n_unconverged, self.integrator)
        state.t = grid[i + n]
        if i + n == ctx.n_steps and self.mode == "sde" and self.last_step is not None:
            x = self._apply_last_step(x, state, ctx)
            state.t = grid[-1] + self.last_step_size
        state.x = x
        return state

    def _apply_last_step(
        self, x: torch.Tensor, state: FlowState, ctx: SamplerContext
    ) -> torch.Tensor:
        t = cast(torch.Tensor, state.grid)[-1].expand(x.shape[0])
        conditioning, delta = ctx.model_kwargs, self.last_step_size
        if self.last_step == "Mean":
            a, b, _ = cast(_GridRows, state.sde_table)[-1]
            return torch.add(x, self._grid_drift(conditioning, a, b)(x, t), alpha=delta)
        if self.last_step == "Euler":
            return torch.add(x, self._ode_drift(conditioning)(x, t), alpha=delta)
        _, score = self._velocity_and_score(x, t, conditioning)
        tb = expand_t_like_x(t, x)
        alpha = self.interpolant.compute_alpha_t(tb)[0]
        sigma = self.interpolant.compute_sigma_t(tb)[0]
        return (x + sigma.square() * score) / alpha

    def finish(self, state: FlowState, ctx: SamplerContext) -> None:
        """One `RuntimeWarning` if a fixed-step integrator's implicit solves did not
        converge at some steps of the call (how many, in how many chains, and the remedy);
        one host sync, none for an explicit or adaptive integrator.

        Args:
            state: The final `FlowState` (its ``n_unconverged`` counts).
            ctx: This call's [`SamplerContext`][torchebm.core.SamplerContext].
        """
        warn_unconverged(self, state.n_unconverged)

    def compute_diagnostics(self, state: FlowState, ctx: SamplerContext) -> dict[str, torch.Tensor]:
        out = super().compute_diagnostics(state, ctx)
        out["t"] = cast(torch.Tensor, state.t)
        return out

    def explain_type_error(self, err: TypeError, x: torch.Tensor, ctx: SamplerContext) -> None:
        """A model whose signature refuses ``model(x, t, **model_kwargs)`` is named in a
        ``ConfigurationError`` (a ``TypeError`` too); any other ``TypeError`` is left as it is.

        Args:
            err: The ``TypeError`` raised by the sampling loop.
            x: The starting points `(B, *event)`.
            ctx: The call's context (its ``model_kwargs``).
        """
        explain_model_error("FlowSampler", self.model, err, FIELD_CALL, ctx.model_kwargs)

    # ------------------------------------------------------------------ public API
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
        **legacy_model_kwargs: Any,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        r"""Integrate from ``x`` (default: noise $\sigma(t_0)\,\xi$, $\xi$ standard normal
        ``(n_samples, *dim)``, the path's noise level at the start $t_0$: standard normal on
        the linear and cosine paths from $t_0 = 0$, $\mathcal N(0, \sigma_{max}^2 I)$ on the
        VE paths; with ``reverse=True`` the default is standard normal).

        Same contract as [`BaseSampler.sample`][torchebm.core.BaseSampler.sample]
        (``y=`` included). Other bare keyword arguments are deprecated conditioning (merged
        into ``model_kwargs``, which wins on a clash; one ``DeprecationWarning``); keywords
        of the removed API (``mode``, ``shape``, ``method``, ``atol``, ``num_steps``,
        ``z``, ...) raise ``TypeError`` with the replacement.

        Args:
            x: Start points `(B, *event)` at $t_0$; ``None`` draws the noise above.
            dim: Event shape of the drawn noise (with ``x``: must match ``x.shape[1:]``).
            n_steps: Integration steps over $[t_0, t_1]$ (default: the constructor's).
            n_samples: Batch size of the drawn noise.
            thin: Keep every ``thin``-th point of the path in a trajectory.
            return_trajectory: Return the kept points `(B, n_steps // thin, *event)`.
            return_diagnostics: Also return the per-kept-step diagnostics dict.
            reset_schedulers: Reset the schedulers of the module tree first.
            model_kwargs: Conditioning of the velocity/score model.
            generator: Source of the start noise and of the SDE noise.
            nan_policy: This call's policy for non-finite states.
            nan_check_every: Steps between checks for non-finite states.
            compile: Run the step under `torch.compile`. Only the integrator's update is
                compiled (the drift, a closure over this sampler, runs as it is), once per
                distinct step width (a uniform grid of 10-40 steps has 5-7 in float
                arithmetic); a grid of many distinct widths reaches torch's
                recompile limit within one call and then runs eagerly, slower than
                `compile=False`. To compile the network, pass a compiled model
                (`FlowSampler(torch.compile(model), ...)`): one graph, whatever `n_steps`.
            y: Labels, merged into ``model_kwargs`` as ``{"y": y}``.
            **legacy_model_kwargs: Deprecated bare conditioning keywords (see above).
        """
        if legacy_model_kwargs:
            removed = sorted(k for k in legacy_model_kwargs if k in _REMOVED_SAMPLE_KWARGS)
            if removed:
                hints = "; ".join(f"{k}: {_REMOVED_SAMPLE_KWARGS[k]}" for k in removed)
                raise TypeError(
                    f"FlowSampler.sample() got removed keyword argument(s) {removed} ({hints})"
                )
            model_kwargs = self._resolve_model_kwargs(
                model_kwargs, legacy_model_kwargs, warn_key="FlowSampler.sample.legacy_model_kwargs"
            )
        # per call, not on self: another thread's or a nested sample() must not change it
        token = _NOISE_START.set(x is None and not self.reverse)
        try:
            return super().sample(**forward_kwargs(locals(), super().sample))
        finally:
            _NOISE_START.reset(token)

    @staticmethod
    def prior_logp(z: torch.Tensor) -> torch.Tensor:
        r"""Standard-normal log density per sample, $-\tfrac N2\log 2\pi - \tfrac12\|z\|^2$.

        Args:
            z: ``(B, *event_shape)``.

        Returns:
            ``(B,)``.
        """
        n = z[0].numel()
        return -0.5 * n * math.log(2 * math.pi) - 0.5 * z.reshape(z.shape[0], -1).square().sum(1)

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode!r}, interpolant={self.interpolant!r}, "
            f"prediction={self.prediction.name.lower()!r}, reverse={self.reverse}, "
            f"negate_velocity={self.negate_velocity}, {super().extra_repr()}"
        )


#: Whether the running ``sample()`` call (of this thread) drew its starting noise, which
#: `init_state` then scales to the path's noise level.
_NOISE_START: contextvars.ContextVar[bool] = contextvars.ContextVar("noise_start", default=False)


def _non_negative(name: str, value: Any, default: float) -> float:
    return default if value is None else check_non_negative(name, value)


def _check_last_step_size(value: Any) -> float:
    """``float(value)`` for a number in [0, 1) (``TypeError``/``ConfigurationError`` else)."""
    v = check_finite("last_step_size", value)
    if not 0.0 <= v < 1.0:
        raise ConfigurationError(f"last_step_size must be in [0, 1), got {value!r}")
    return v
