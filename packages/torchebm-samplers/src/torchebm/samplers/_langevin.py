r"""Overdamped Langevin dynamics (unadjusted Langevin algorithm)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import torch

from torchebm.core import (
    BaseSampler,
    BaseSDERungeKuttaIntegrator,
    ConstantScheduler,
    SamplerContext,
    SamplerState,
    ScheduledParameter,
    shared_field,
)
from torchebm.core._module import forward_kwargs, warn_user
from torchebm.core.errors import check_clamp
from torchebm.integrators import EulerMaruyamaIntegrator, resolve_integrator
from torchebm.integrators._compat_089 import accept_089_pickle, overridden
from torchebm.samplers._backend import check_fused_integrator, optional_kernel, resolve_fused
from torchebm.samplers._compat import SamplerHooks089, explain_energy_call, resolve_model
from torchebm.samplers._compat_089 import langevin_overrides
from torchebm.samplers._implicit_solves import (
    add_unconverged,
    unconverged_counter,
    warn_unconverged,
)

__all__ = ["LangevinDynamics", "LangevinState", "langevin_update"]


def langevin_update(
    x: torch.Tensor,
    grad: torch.Tensor,
    step_size: float,
    noise_scale: float = 1.0,
    clamp: tuple[float, float] | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    out: torch.Tensor | None = None,
    *,
    noise_buffer: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""One Euler-Maruyama Langevin update, the only implementation of `LangevinDynamics`' step.

    $$ x' = \operatorname{clamp}\bigl(x - \eta\,\nabla E(x) + \sigma\sqrt{2\eta}\,\xi\bigr),
    \qquad \xi \sim \mathcal N(0, I). $$

    Bit-for-bit what `EulerMaruyamaIntegrator.step` computes with drift $-\nabla E$ and
    `noise_scale` $\sigma$ (same operations, same random draws). `torchebm.cuda.
    fused_langevin_step` takes the same first seven arguments and ``out=`` by keyword (its
    eighth position is ``seed``), the sampler's call, and is its drop-in on CUDA; under
    `sample(compile=True)` this function is what gets compiled.

    Args:
        x: Chains `(B, *event_shape)`.
        grad: $\nabla E(x)$, shaped like `x`.
        step_size: $\eta > 0$.
        noise_scale: $\sigma \ge 0$ (no draw at all when the noise amplitude is 0).
        clamp: Optional `(low, high)` applied after the update.
        noise: Optional standard-normal draws $\xi$ shaped like `x` (default: drawn).
        generator: Source of the noise (`None`: the global RNG).
        out: `x` itself to update in place (the sampler's own chains), else `None`.
        noise_buffer: Optional tensor like `x` the noise is drawn into (saves an allocation).

    Returns:
        The updated chains, shaped like `x` (`out` when given).

    Example:
        >>> x = torch.ones(3, 2)
        >>> langevin_update(x, x, 0.1, 0.0)
        tensor([[0.9000, 0.9000],
                [0.9000, 0.9000],
                [0.9000, 0.9000]])

    References:
        Roberts, G. O. & Tweedie, R. L. (1996). Exponential convergence of Langevin
        distributions and their discrete approximations. Bernoulli 2(4).
    """
    if out is x and not x.requires_grad:
        new = x.add_(grad, alpha=-float(step_size))
    else:
        new = torch.add(x, grad, alpha=-float(step_size))
    amp = math.sqrt(2.0 * float(noise_scale) ** 2 * abs(float(step_size)))
    if amp != 0.0:  # no noise: no draw (the integrator skips it too)
        if noise is None:
            buf = torch.empty_like(new) if noise_buffer is None else noise_buffer
            noise = buf.normal_(generator=generator)
        new.add_(noise, alpha=amp)
    if clamp is not None:
        new.clamp_(clamp[0], clamp[1])
    return new


@dataclass
class LangevinState(SamplerState):
    """Loop state of `LangevinDynamics`: the chains and what the call resolved once.

    Attributes:
        x: Chains `(B, *event_shape)`.
        update: The update of this call: `langevin_update`, or its fused drop-in
            `torchebm.cuda.fused_langevin_step` (called alike, ``out=`` by keyword), `None`
            for another integrator.
        chain: `torchebm.cuda.langevin_chain` when whole stretches of the chain run in one
            kernel, else `None`.
        owned: Whether `x` is the loop's own tensor (then updated in place).
        constants: `(step_size, noise_scale)` when both are constant during the call (read
            once), else `None` (read from their schedulers at every step).
        n_unconverged: `(B,)` int64 for an integrator with an implicit stage: per chain,
            the steps of the call whose implicit solve did not converge (shared: a restart
            under `nan_policy="resample"` keeps the count); `None` otherwise.
    """

    update: Callable[..., torch.Tensor] | None = shared_field()
    chain: Callable[..., torch.Tensor] | None = shared_field()
    owned: bool = shared_field(False)
    constants: tuple[float, float] | None = shared_field()
    n_unconverged: torch.Tensor | None = shared_field()


class LangevinDynamics(SamplerHooks089, BaseSampler):
    r"""Langevin dynamics for $p(x) \propto e^{-E(x)}$.

    With the default Euler-Maruyama integrator each step is

    $$
    x_{k+1} = x_k - \eta_k \nabla E(x_k) + \sigma_k \sqrt{2\eta_k}\,\xi_k,
    \qquad \xi_k \sim \mathcal N(0, I),
    $$

    so ``noise_scale`` $\sigma = 1$ samples $e^{-E}$ (up to the
    $O(\eta)$ discretisation bias) and $\sigma \ne 1$ samples
    $e^{-E/\sigma^2}$. ``step_size`` and ``noise_scale`` may be schedulers (e.g. a
    [`TemperatureScheduler`][torchebm.core.TemperatureScheduler] for Energy-Matching generation).

    Args:
        model: Energy model (closed-form gradients for analytic models, one autograd call
            per step otherwise). ``energy_function=`` is a deprecated alias.
        step_size: $\eta > 0$, float or scheduler.
        noise_scale: $\sigma > 0$, float or scheduler.
        decay: Kept for signature compatibility: stored and unused, as in 0.8.9; a value
            other than ``0.0`` warns that it has no effect.
        clamp: Optional ``(low, high)``: chains are clamped after every step; either
            bound may be ``None`` (one-sided, the rule of `torchebm.core.errors.check_clamp`).
        dtype: Chain dtype when the model has no parameters.
        device: Chain device when the model has no parameters.
        integrator: ``None`` (Euler-Maruyama), a registry name or an instance of the SDE
            Runge-Kutta family (``"heun"``, ``"backward_euler_maruyama"``, ...). With an
            implicit stage, ``sample()`` counts per chain the steps whose solve did not
            converge (its `solver_converged`) and ends with one ``RuntimeWarning`` if any
            did: the step is then not the implicit scheme, and the samples are biased.
            A higher-order scheme is not a better sampler: ``"heun"`` adds the noise after
            its deterministic predictor-corrector step, so its stationary law is about twice
            as far from $e^{-E}$ as Euler-Maruyama's (a standard Gaussian's variance
            $1 + 0.22$ against $1 + 0.11$ at ``step_size=0.2``).
        n_steps: Default number of steps of ``sample()`` (class default 100).
        backend: ``"auto"`` (fused kernels of ``torchebm-cuda`` when installed and the
            chains are fp32 on CUDA, else eager), ``"eager"`` or ``"fused"`` (requires
            ``torchebm-cuda``; the built-in Euler-Maruyama only: another integrator, a
            subclass too, is a ``ConfigurationError``, and under ``"auto"`` runs its own steps
            eagerly). On the fused path a double-well,
            harmonic or diagonal-Gaussian model with constant ``step_size`` and
            ``noise_scale``, no conditioning and no ``"resample"`` policy runs stretches of
            the chain in one kernel (``torchebm.cuda.langevin_chain``: ``nan_check_every``
            steps, or while recording ``gcd(thin, nan_check_every)``); other models take one
            fused update per step.
        nan_policy: ``"warn"`` (default: divergent chains are reported and recorded in
            ``divergent_chains``), ``"raise"`` or ``"resample"`` (see `BaseSampler`).
        energy_function: Deprecated alias of ``model``.

    Diagnostics: ``"mean"``, ``"var"`` ``(n_kept, *event_shape)``, ``"energy"`` ``(n_kept,)``.

    Example:
        >>> from torchebm.core import GaussianModel
        >>> model = GaussianModel(torch.zeros(2), torch.eye(2))
        >>> sampler = LangevinDynamics(model, step_size=0.05)
        >>> sampler.sample(dim=2, n_samples=8, n_steps=50).shape
        torch.Size([8, 2])

    References:
        Roberts, G. O. & Tweedie, R. L. (1996). Exponential convergence of Langevin
        distributions and their discrete approximations. Bernoulli 2(4).
        Welling, M. & Teh, Y. W. (2011). Bayesian learning via stochastic gradient Langevin
        dynamics. ICML.
    """

    integrator: BaseSDERungeKuttaIntegrator
    clamp: tuple[float, float] | None
    backend: str
    __setstate__ = accept_089_pickle("nan_policy", langevin_overrides)  # 0.8.9 pickles
    explain_type_error = explain_energy_call  # names a model refusing model(x, **model_kwargs)

    def __init__(
        self,
        model: Any = None,
        step_size: Any = 1e-3,
        noise_scale: Any = 1.0,
        decay: float = 0.0,
        clamp: tuple[float, float] | None = None,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
        integrator: Any = None,
        *,
        n_steps: int | None = None,
        backend: str = "auto",
        nan_policy: str = "warn",
        energy_function: Any = None,
    ):
        model = resolve_model(type(self).__name__, model, energy_function)
        super().__init__(**forward_kwargs(locals(), super().__init__))
        self.step_size = step_size
        self.noise_scale = noise_scale
        if isinstance(decay, bool) or not isinstance(decay, numbers.Real):
            raise TypeError(f"decay must be a number, got {decay!r}")
        if float(decay) != 0.0:  # 0.8.9 stored it and ignored it: its scripts keep running
            warn_user(
                f"LangevinDynamics(decay={decay!r}) has no effect, as in torchebm 0.8.9; for "
                "weight decay add a quadratic term to the energy",
                UserWarning,
            )
        self.decay = float(decay)
        self.clamp = check_clamp(clamp)
        self.integrator = cast(
            BaseSDERungeKuttaIntegrator,
            resolve_integrator(
                integrator,
                default="euler_maruyama",
                family=BaseSDERungeKuttaIntegrator,
                owner=type(self).__name__,
                device=self.device,
                dtype=self.dtype,
            ),
        )
        self.backend = check_fused_integrator(
            backend, self.integrator, EulerMaruyamaIntegrator, "Euler-Maruyama update"
        )

    step_size = ScheduledParameter(positive=True)
    r"""Current step size $\eta$ (assign a float or a scheduler)."""

    noise_scale = ScheduledParameter(positive=True)
    r"""Current noise scale $\sigma$ (assign a float or a scheduler)."""

    @property
    def stationary_temperature(self) -> float | None:
        r"""$T_0 = \sigma^2$: the chains sample $e^{-E/T_0}$ (up to the step's bias);
        ``None`` while ``noise_scale`` follows a schedule (no single temperature). Read by
        `ParallelTemperingCD` to check its ``base_temperature``."""
        schedule = self.get_schedulers().get("noise_scale")
        if schedule is not None and type(schedule) is not ConstantScheduler:
            return None
        return float(self.get_scheduled_value("noise_scale")) ** 2

    def init_state(self, x: torch.Tensor, ctx: SamplerContext) -> LangevinState:
        """Choose, once for the call, the update (eager, fused kernel or whole-chain kernel).

        Args:
            x: Starting chains `(B, *event_shape)`, a copy owned by the call.
            ctx: This call's [`SamplerContext`][torchebm.core.SamplerContext].
        """
        check_fused_integrator(  # the constructor's checks of what may have been assigned
            self.backend, self.integrator, EulerMaruyamaIntegrator, "Euler-Maruyama update"
        )
        clamp = check_clamp(self.clamp)  # (an assigned -1.0 failed inside as a bare TypeError)
        if clamp != self.clamp:  # the one form the updates take: (lo, hi), missing bounds inf
            self.clamp = clamp
        state = LangevinState(x=x, owned=True)  # `sample()` passes a copy of its own
        scheds = self.get_schedulers()
        eta, sigma = scheds.get("step_size"), scheds.get("noise_scale")
        if type(eta) is ConstantScheduler and type(sigma) is ConstantScheduler:
            state.constants = (eta.get_value(), sigma.get_value())
        integrator = self.integrator
        if type(integrator) is EulerMaruyamaIntegrator:  # a subclass runs its own steps
            fused = resolve_fused(self.backend, "fused_langevin_step", x, owner=type(self).__name__)
            if fused is not None:
                state.update, state.chain = fused, self._chain_kernel(ctx)
            else:
                state.update = partial(langevin_update, noise_buffer=torch.empty_like(x))
        state.n_unconverged = unconverged_counter(integrator, x)
        return state

    def _chain_kernel(self, ctx: SamplerContext) -> Any:
        """`torchebm.cuda.langevin_chain` when it can run several steps of this call in one
        kernel, else `None`.

        It can when the model has a closed-form elementwise gradient the kernel knows
        (`supports_energy`: double well, harmonic, diagonal Gaussian), nothing conditions
        it, the sampler keeps `model_gradient`, `step_size` and `noise_scale` are constant
        during the call (the kernel takes one value of each) and chains are not restarted
        step by step (`nan_policy="resample"`).
        """
        if ctx.model_kwargs or ctx.nan_policy == "resample":
            return None
        if overridden(self, "model_gradient", BaseSampler):
            return None  # a subclass's own, or one set on the instance
        if any(type(s) is not ConstantScheduler for s in self.get_schedulers().values()):
            return None
        chain = optional_kernel("langevin_chain")
        supports = optional_kernel("supports_energy")
        if chain is None or supports is None or not supports(self.model):
            return None
        return chain

    def steps_per_call(self, state: LangevinState, ctx: SamplerContext) -> int:
        """1, or with the whole-chain kernel every step up to the next NaN check (and the
        next recorded row): the checks then happen after the same steps as step by step.

        Args:
            state: The call's `LangevinState` (whether a whole-chain kernel runs).
            ctx: This call's [`SamplerContext`][torchebm.core.SamplerContext] (``thin``, ``nan_check_every``).
        """
        if state.chain is None:
            return 1
        k = ctx.nan_check_every
        return math.gcd(ctx.thin, k) if ctx.recording else k

    def step(self, state: LangevinState, ctx: SamplerContext) -> LangevinState:
        x = state.x
        if state.constants is not None:
            eta, sigma = state.constants
        else:
            eta = self.get_scheduled_value("step_size")
            sigma = self.get_scheduled_value("noise_scale")
        if state.chain is not None:  # ctx.n steps of the same update in one kernel
            state.x = state.chain(
                x, self.model, ctx.n, eta, sigma, clamp=self.clamp, generator=ctx.generator,
                check_finite=False,
            )  # fmt: skip
        elif state.update is not None:  # langevin_update or its fused drop-in
            state.x = state.update(
                x, self.gradient_fn(ctx)(x), eta, sigma, clamp=self.clamp,
                generator=ctx.generator, out=x if state.owned else None,
            )  # fmt: skip
            state.owned = True  # from now on the loop's own tensor: updated in place
        else:  # another SDE integrator (Heun, ...): a different scheme, its own step
            state.x = self._integrator_step(x, eta, sigma, ctx)
            if state.n_unconverged is not None:  # an implicit stage: count its failures
                add_unconverged(state.n_unconverged, self.integrator)
        return state

    def finish(self, state: LangevinState, ctx: SamplerContext) -> None:
        """One `RuntimeWarning` if the integrator's implicit solves did not converge at some
        steps of the call (how many, in how many chains, and the remedy: raise its
        ``solver_max_iter`` or lower ``step_size``); one host sync, none for an explicit
        integrator.

        Args:
            state: The final `LangevinState` (its ``n_unconverged`` counts).
            ctx: This call's [`SamplerContext`][torchebm.core.SamplerContext].
        """
        warn_unconverged(self, state.n_unconverged)

    def _integrator_step(
        self, x: torch.Tensor, eta: float, sigma: float, ctx: SamplerContext
    ) -> torch.Tensor:
        conditioning = ctx.model_kwargs

        def drift(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return -self.model_gradient(z, conditioning)  # new memory: g may be a view of z

        new = self.integrator.step(
            {"x": x}, eta, drift=drift, noise_scale=sigma, generator=ctx.generator
        )["x"]
        if self.clamp is not None:
            new = new.clamp_(*self.clamp) if new is not x else new.clamp(*self.clamp)
        return new

    def extra_repr(self) -> str:
        return (
            f"step_size={self.step_size}, noise_scale={self.noise_scale}, clamp={self.clamp}, "
            f"backend={self.backend!r}, {super().extra_repr()}"
        )
