r"""Hamiltonian Monte Carlo: Euclidean (``HamiltonianMonteCarlo``) and Riemannian (``RiemannianManifoldHMC``)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, cast

import torch

from torchebm.core import (
    BaseModel,
    BaseSampler,
    SamplerContext,
    SamplerState,
    ScheduledParameter,
    expand_t_like_x,
    shared_field,
    warn_once,
)
from torchebm.core._module import forward_kwargs, warn_user
from torchebm.core.errors import (
    ConfigurationError,
    ShapeError,
    check_energies,
    check_int,
    check_tensor,
)
from torchebm.flows._utils import check_model_object, outside_autocast
from torchebm.integrators import (
    BaseSymplecticIntegrator,
    GeneralisedLeapfrogIntegrator,
    LeapfrogIntegrator,
    LeapfrogResult,
    resolve_integrator,
)
from torchebm.integrators._checked import check_field_dtype, check_mass
from torchebm.integrators._compat_089 import accept_089_pickle, overridden
from torchebm.integrators._state import (
    autograd_grad,
    autograd_ready,
    rms_rows,
    rows_close,
    tolerance,
)
from torchebm.samplers._backend import check_fused_integrator, resolve_fused
from torchebm.samplers._compat import SamplerHooks089, explain_energy_call, resolve_model

__all__ = ["HamiltonianMonteCarlo", "RiemannianManifoldHMC", "HMCState"]


def _flat(v: torch.Tensor) -> torch.Tensor:
    return v if v.ndim == 2 else v.reshape(v.shape[0], -1)


@dataclass
class HMCState(SamplerState):
    """Loop state of the HMC samplers (per chain unless noted).

    Attributes:
        x: Chains `(B, *event_shape)`.
        energy: $E(x)$ `(B,)`, kept from the last accepted point (never evaluated twice).
        grad: $\nabla E(x)$ like `x` when the trajectory returns its end-point gradient
            (default leapfrog, fused kernel), else `None`.
        accepted: `(B,)` bool, whether each chain's last proposal was accepted.
        decided: Under `nan_policy="resample"`, `(B,)` bool, whether each chain's last step
            ended in a Metropolis decision (`accepted` or rejected): `False` in the state
            `init_state` returns, so a chain restarted after a step gets `False` back with
            its other fields, and that step is left out of the `"acceptance_rate"`
            diagnostic. `None` under the other policies (no restarts: every chain decides).
        p: Momentum buffer like `x`, redrawn every step (shared: not restarted).
        mass: The call's diagonal mass (`None`, a float or a tensor; shared).
        sqrt_mass: Its square root (shared).
        fused: `torchebm.cuda.fused_leapfrog_step` when the call runs the fused trajectory.
        whitening: HMC with a dense mass matrix $M = L L^\top$: `(L, L^{-1})` `(D, D)`; the
            trajectory runs in the coordinates $y = L^\top x$, $q = L^{-1} p$, where the
            mass is the identity (`mass` is then `None`; shared).
        cholesky: RMHMC: `(x, L)`, the Cholesky factor of the metric at the tensor `x`
            (shared: a cache of the current trajectory).
        force_cache: RMHMC: the parts of the force at one tensor `x` that do not depend on
            the momentum (see `RiemannianManifoldHMC._force_terms`; shared: a cache of the
            current trajectory, like `cholesky`).
        unconverged: RMHMC: `(B,)` bool, whether each chain's last proposal was rejected
            because an implicit solve of its trajectory did not converge (shared).
        n_unconverged: RMHMC: `(B,)` int64, how many of each chain's proposals of the
            current `sample()` call were rejected so (shared: a restart under
            `nan_policy="resample"` keeps the count).
        metric_ok: RMHMC: `(B,)` bool, whether the metric's Cholesky factorisation
            succeeded at every point of the current step where it was finite (shared).
        n_not_pd: RMHMC: `(B,)` int64, how many of each chain's proposals of the current
            `sample()` call were rejected because it did not (shared, like `n_unconverged`).
        start: HMC: the chains at the start of the call (shared; `finish` compares).
    """

    energy: torch.Tensor | None = None
    grad: torch.Tensor | None = None
    accepted: torch.Tensor | None = None
    decided: torch.Tensor | None = None
    p: torch.Tensor | None = shared_field()
    mass: Any = shared_field()
    sqrt_mass: Any = shared_field()
    fused: Callable[..., Any] | None = shared_field()
    whitening: tuple[torch.Tensor, torch.Tensor] | None = shared_field()
    cholesky: tuple[torch.Tensor, torch.Tensor] | None = shared_field()
    force_cache: tuple[Any, ...] | None = shared_field()
    unconverged: torch.Tensor | None = shared_field()
    n_unconverged: torch.Tensor | None = shared_field()
    metric_ok: torch.Tensor | None = shared_field()
    n_not_pd: torch.Tensor | None = shared_field()
    start: torch.Tensor | None = shared_field()


class _HMCBase(SamplerHooks089, BaseSampler):
    """Shared parts of the HMC family: ``step_size``, the energy and the Metropolis test."""

    diagnostic_keys: ClassVar[tuple[str, ...]] = ("mean", "var", "energy", "acceptance_rate")
    _retired_hooks = dict.fromkeys(
        ("_initialize_momentum", "_compute_kinetic_energy", "_kinetic_energy", "_metric_chol"),
        "the momenta and kinetic energy follow `mass` (HamiltonianMonteCarlo) or `metric_fn` "
        "(RiemannianManifoldHMC); override `step` for another transition",
    )
    explain_type_error = explain_energy_call  # names a model refusing model(x, **model_kwargs)
    __setstate__ = accept_089_pickle("nan_policy")  # samplers pickled whole by torchebm 0.8.9

    step_size = ScheduledParameter(positive=True)
    r"""Current leapfrog step size $\epsilon$ (assign a float or a scheduler)."""

    #: The chains sample $e^{-E}$: temperature 1 (read by `ParallelTemperingCD`).
    stationary_temperature: float = 1.0

    def infer_dim(self) -> Any:
        """``(D,)`` from a model's 1-D tensor `mean` (Gaussian models; 0.8.9 read
        ``mean.shape[0]``): a mean of more dimensions is a normalisation buffer such as an
        image model's ``(C, 1, 1)``, not the event shape, and ``dim`` must be given."""
        mean = getattr(self.model, "mean", None)
        if isinstance(mean, torch.Tensor) and mean.ndim == 1:
            return tuple(mean.shape)
        return None

    def _symplectic(self, integrator: Any, default: str, *, separable: bool) -> Any:
        """The symplectic integrator (``None``, a registry name or an instance), checked to be
        separable (HMC) or non-separable (RMHMC)."""
        resolved = resolve_integrator(
            integrator,
            default=default,
            family=BaseSymplecticIntegrator,
            owner=type(self).__name__,
            device=self.device,
            dtype=self.dtype,
        )
        if resolved.separable != separable:
            hint = "; use RiemannianManifoldHMC for non-separable Hamiltonians" if separable else ""
            raise TypeError(
                f"{type(self).__name__} requires a {'' if separable else 'non-'}separable "
                f"symplectic integrator (e.g. {default!r}), got {type(resolved).__name__}{hint}"
            )
        return resolved

    def _energy(self, x: torch.Tensor, conditioning: dict) -> torch.Tensor:
        """The energies of the Metropolis test, computed outside autocast (bfloat16 rounds an
        energy near 128 to an integer: the test then samples another law)."""
        with outside_autocast(x.device.type):
            energies = self.model_energy(x, conditioning)
        try:
            return check_energies(type(self.model).__name__, energies, x.shape[0])
        except ShapeError as err:  # chains shaped by `infer_dim` from a normalisation buffer?
            if x.shape[1:] != getattr(getattr(self.model, "mean", None), "shape", None):
                raise
            raise ShapeError(
                f"{err} (the chains' event shape {tuple(x.shape[1:])} is that of model.mean, "
                "which sample() reads when neither x nor dim is given: pass dim= or x=)"
            ) from err

    def _start_energy(
        self, x: torch.Tensor, conditioning: dict, moves: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""The energies `(B,)` of the starting chains, NaN for a chain that cannot move: one
        at $E = +\infty$ (outside the support), or not in ``moves`` `(B,)` bool. A NaN current
        energy accepts no proposal, so the chain stays at its start and the loop's first check
        reports it (at $+\infty$ it accepted the first finite proposal and was never reported).
        """
        energy = self._energy(x, conditioning)
        stuck = energy == math.inf if moves is None else ~moves | (energy == math.inf)
        return energy.masked_fill(stuck, math.nan)

    def _metropolis(
        self,
        state: HMCState,
        h_cur: torch.Tensor,
        h_prop: torch.Tensor,
        x_prop: torch.Tensor,
        u_prop: torch.Tensor,
        ctx: SamplerContext,
    ) -> HMCState:
        r"""Accept ``x_prop`` per chain with probability $\min(1, e^{H - H'})$.

        The test is ``log(1 - u) <= H - H'`` for ``u`` uniform on $[0, 1)$: ``1 - u`` is never 0
        (``log u`` of a draw ``u = 0``, one in $2^{24}$ in float32, accepted any proposal,
        $H' - H = 10^{28}$ too) and ``<=`` accepts every move of ratio 1. It is false for a
        NaN Hamiltonian and for $H' = +\infty$: a trajectory that diverged (NaN or infinite
        energy) is rejected without a mask. A chain whose *current* energy is NaN
        (``state.energy``; a start at $+\infty$ is held at NaN, see `_start_energy`) can
        never accept: it stays where it started and the driver's ``nan_policy`` reports it.
        """
        x = state.x
        log_ratio = h_cur - h_prop
        # uniform_ on a buffer shaped like the energies: no Python int size, so a compiled
        # step works for any batch size; in at least float32 (bfloat16 has 1958 values below
        # 1: no move of ratio under e^-5.5 was ever accepted)
        wide = torch.promote_types(log_ratio.dtype, torch.float32)
        u = torch.empty_like(log_ratio, dtype=wide).uniform_(generator=ctx.generator)
        accept = u.neg_().log1p_() <= log_ratio  # log(1 - u): finite for every draw
        state.x = torch.where(expand_t_like_x(accept, x), x_prop, x)
        state.energy = torch.where(accept, u_prop, cast(torch.Tensor, state.energy))
        state.accepted = accept
        if state.decided is not None:  # "resample": a restart puts the start's False back
            state.decided = torch.ones_like(accept)
        return state

    @staticmethod
    def _undecided(x: torch.Tensor, ctx: SamplerContext) -> torch.Tensor | None:
        """`HMCState.decided` at the start: all `False` under `"resample"`, else `None`."""
        if ctx.nan_policy != "resample":
            return None
        return torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    def compute_diagnostics(self, state: HMCState, ctx: SamplerContext) -> dict[str, torch.Tensor]:
        r"""The base diagnostics and ``"acceptance_rate"``: accepted proposals over Metropolis
        decisions of this step, $\sum_b a_b / \sum_b d_b$ (``accepted``, ``decided``).

        A chain restarted after this step by ``nan_policy="resample"`` (it accepted a
        non-finite proposal, or its energy was NaN/inf already) made no decision that stands,
        so it counts in neither sum; the rate is NaN at a step where every chain was
        restarted. Without restarts (the other policies) every chain decided and the rate is
        the mean of ``accepted`` over the chains.

        Args:
            state: The `HMCState` after the step (``accepted``, ``decided``).
            ctx: This call's [`SamplerContext`][torchebm.core.SamplerContext].
        """
        out = super().compute_diagnostics(state, ctx)
        accepted = cast(torch.Tensor, state.accepted).to(state.x.dtype)
        decided = state.decided
        if decided is None:  # no restarts (or a subclass's state without the field)
            out["acceptance_rate"] = accepted.mean()
        else:
            out["acceptance_rate"] = accepted.sum() / decided.to(accepted.dtype).sum()
        return out


def _ignore_time(gradient):
    """``gradient(x)`` as the ``gradient(x, t)`` callback of an integrator (H is autonomous)."""

    def callback(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return gradient(x)

    return callback


def _keep_absent_mass(module: Any, state_dict: dict, prefix: str, *_: Any) -> None:
    """Load pre-hook: a state dict without ``_mass`` (torchebm 0.8.9 and earlier versions of
    this sampler kept the tensor mass out of it) keeps the current mass, under
    ``strict=True`` too."""
    key, mass = prefix + "_mass", getattr(module, "_mass", None)
    if key not in state_dict and mass is not None:
        state_dict[key] = mass


def _whitened(
    whitening: tuple[torch.Tensor, torch.Tensor],
    x: torch.Tensor,
    gradient: Callable[[torch.Tensor], torch.Tensor],
    energy: Callable[[torch.Tensor], torch.Tensor],
    grad0: torch.Tensor | None,
) -> tuple[torch.Tensor, Callable, Callable, torch.Tensor | None]:
    r"""A trajectory's start, gradient and energy in the coordinates of a dense mass.

    For $M = L L^\top$ (``whitening = (L, L^{-1})``) the leapfrog of
    $H = E(x) + \tfrac12 p^\top M^{-1} p$ is that of $V(y) = E(L^{-\top} y)$ with a unit mass
    in $y = L^\top x$, $q = L^{-1} p$: the map is linear and symplectic, so the trajectory
    and the Hamiltonian at each point are the same (Neal 2011, sec. 4.1), and the integrator
    needs no dense mass. In rows: $y = x L$, $x = y L^{-1}$, $\nabla_y V = \nabla_x E\,L^{-\top}$.

    Returns:
        ``(y, gradient(y), energy(y), grad0 in y)``.
    """
    factor, inverse = whitening

    def gradient_y(y: torch.Tensor) -> torch.Tensor:
        return gradient(y @ inverse) @ inverse.mT

    def energy_y(y: torch.Tensor) -> torch.Tensor:
        return energy(y @ inverse)

    return x @ factor, gradient_y, energy_y, None if grad0 is None else grad0 @ inverse.mT


def _is_dense(mass: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether a tensor `mass` is a dense `(D, D)` matrix for the chains `x` `(B, D)` (a
    square mass of 2-D events is their diagonal, elementwise)."""
    return x.ndim == 2 and tuple(mass.shape) == (x.shape[1], x.shape[1])


def _mass_factors(mass: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    r"""`(L, L^{-1})` in `dtype`, on the CPU, of a dense mass matrix $M = L L^\top$
    (factorised in float64 on the CPU: any device, MPS too).

    The matrix is symmetrised, $(M + M^\top)/2$; an asymmetry above $10\sqrt\epsilon$ of
    its largest entry ($\epsilon$ of its dtype: 3.5e-3 in float32, the rounding of an
    inverse of condition number up to about 3e4) is refused as a matrix not meant symmetric.

    Raises:
        ConfigurationError: `mass` is not finite, not symmetric, not positive definite, or its
            factors overflow `dtype`.
    """
    m = mass.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(m).all()):
        raise ConfigurationError(f"a dense mass matrix must be finite, got {_described(mass)}")
    scale = float(m.abs().max())
    asymmetry = float((m - m.mT).abs().max())
    if asymmetry > 10 * math.sqrt(torch.finfo(mass.dtype).eps) * scale:
        raise ConfigurationError(
            f"a dense mass matrix must be symmetric, got max |M - M^T| = {asymmetry:.3g} "
            f"(largest entry {scale:.3g}) for {_described(mass)}; if the asymmetry is "
            "rounding, pass (M + M.mT) / 2"
        )
    factor, info = torch.linalg.cholesky_ex(0.5 * (m + m.mT))
    if int(info) != 0:
        raise ConfigurationError(
            f"a dense mass matrix must be positive definite, got {_described(mass)} (its "
            f"Cholesky factorisation failed at column {int(info) - 1})"
        )
    eye = torch.eye(m.shape[0], dtype=m.dtype)
    inverse = torch.linalg.solve_triangular(factor, eye, upper=False)
    factors = factor.to(dtype), inverse.to(dtype)
    if not all(bool(torch.isfinite(f).all()) for f in factors):
        raise ConfigurationError(
            f"a dense mass matrix's Cholesky factor or its inverse overflows the chains' dtype "
            f"{dtype} (entries up to {float(factor.abs().max()):.3g} and "
            f"{float(inverse.abs().max()):.3g}): rescale the problem or use a wider dtype"
        )
    return factors


def _described(mass: torch.Tensor) -> str:
    """The mass for a message: its values on one line when small, else its shape."""
    if mass.numel() <= 16:
        return "mass " + " ".join(str(mass.detach().cpu()).split())
    return f"a mass of shape {tuple(mass.shape)}"


class HamiltonianMonteCarlo(_HMCBase):
    r"""Hamiltonian Monte Carlo with a leapfrog integrator and a Metropolis correction.

    Each step draws $p \sim \mathcal N(0, M)$, integrates Hamilton's equations of
    $H(x, p) = E(x) + \tfrac12 p^\top M^{-1} p$ for ``n_leapfrog_steps`` leapfrog
    steps of size $\epsilon$, and accepts the end point with probability
    $\min(1, \exp(H(x, p) - H(x', p')))$ (per chain). A proposal whose Hamiltonian is
    NaN or $+\infty$ (a divergent trajectory) is rejected (the integrator runs without
    its NaN-zeroing "safe" mode, so a divergent trajectory is never accepted as a
    sanitised point). A chain whose current energy $E(x)$ is NaN or infinite (e.g. a start
    where the model is NaN, or $+\infty$ outside the support) is divergent: it accepts no
    proposal, stays at its start and is reported by the ``nan_policy`` like a non-finite
    ``x``. Works for any event shape.

    Args:
        model: Energy model. ``energy_function=`` is a deprecated alias.
        step_size: Leapfrog step $\epsilon > 0$, float or scheduler.
        n_leapfrog_steps: Leapfrog steps per proposal (>= 1).
        mass: Mass $M$: ``None`` (identity), a positive number (int or float), a
            positive tensor broadcastable to the event shape (a diagonal, e.g. ``(d,)``), or
            for chains ``(B, d)`` a symmetric positive-definite ``(d, d)`` matrix (a dense
            mass, e.g. the inverse of a posterior covariance; the trajectory then runs in the
            coordinates $y = L^\top x$ of its Cholesky factor $M = L L^\top$, which is the
            same leapfrog, and the fused kernel does not apply). The matrix is symmetrised
            (an asymmetry above $10\sqrt\epsilon$ of its largest entry is refused) and
            factorised in float64 once while it stays the same. A square positive mass of
            2-D events ``(B, d, d)`` is their diagonal; so a positive square mass is checked
            as a matrix when sampling starts, one with entries $\le 0$ at once. Cast to the
            chains' device and dtype. A tensor mass is a buffer in the sampler's
            ``state_dict`` (key ``_mass``); loading a state dict without it (one saved by
            torchebm 0.8.9) keeps the current mass, with ``strict=True`` too.
        dtype: Chain dtype when the model has no parameters.
        device: Chain device when the model has no parameters.
        integrator: ``None`` (leapfrog), a registry name or an instance of a *separable*
            symplectic integrator.
        n_steps: Default number of steps of ``sample()`` (class default 100).
        backend: ``"auto"`` (the fused leapfrog of ``torchebm-cuda`` when installed and the
            chains are fp32 on CUDA, else eager), ``"eager"`` or ``"fused"``
            (``torchebm.cuda.fused_leapfrog_step``; requires ``torchebm-cuda``). The kernel
            runs the built-in leapfrog only: a user's integrator, a subclass too, is a
            ``ConfigurationError`` with ``"fused"`` and runs its own steps eagerly under
            ``"auto"``.
        nan_policy: ``"warn"`` (default: divergent chains are reported and recorded in
            ``divergent_chains``), ``"raise"`` or ``"resample"`` (see `BaseSampler`).
        energy_function: Deprecated alias of ``model``.

    Diagnostics: ``"mean"``, ``"var"``, ``"energy"`` and ``"acceptance_rate"`` (fraction
    of the Metropolis decisions at that step that accepted), each with leading dim
    ``n_kept``. Under ``nan_policy="resample"`` a chain restarted after a step (its state
    went non-finite) is neither an accepted nor a rejected proposal: it is left out of that
    step's numerator and denominator (NaN when every chain was restarted); with the other
    policies every chain counts.

    Model evaluations: ``n_leapfrog_steps`` gradients and one energy per iteration (plus
    one of each when sampling starts). The gradient and the energy at the end point of each
    trajectory (the [`LeapfrogResult`][torchebm.integrators.LeapfrogResult] of the default
    [`LeapfrogIntegrator`][torchebm.integrators.LeapfrogIntegrator], or the fused kernel's)
    are kept for the next iteration (those of the current state when the proposal is
    rejected); another separable integrator, or a `LeapfrogIntegrator` subclass with its own
    ``integrate``, costs ``n_leapfrog_steps + 1`` gradients.

    Example:
        >>> from torchebm.core import GaussianModel
        >>> hmc = HamiltonianMonteCarlo(GaussianModel(torch.zeros(2), torch.eye(2)),
        ...                             step_size=0.2, n_leapfrog_steps=5)
        >>> hmc.sample(n_samples=16, n_steps=20).shape  # dim inferred from the model's mean
        torch.Size([16, 2])

    References:
        Duane, S., Kennedy, A. D., Pendleton, B. J. & Roweth, D. (1987). Hybrid Monte Carlo.
        Physics Letters B 195(2).
        Neal, R. M. (2011). MCMC using Hamiltonian dynamics. Handbook of MCMC, ch. 5.
    """

    def __init__(
        self,
        model: Any = None,
        step_size: Any = 1e-3,
        n_leapfrog_steps: int = 10,
        mass: float | torch.Tensor | None = None,
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
        self.n_leapfrog_steps = check_int("n_leapfrog_steps", n_leapfrog_steps, minimum=1)
        self._set_mass(mass)
        if hasattr(self, "register_load_state_dict_pre_hook"):  # public since torch 2.5
            self.register_load_state_dict_pre_hook(_keep_absent_mass)
        self.integrator = self._symplectic(integrator, "leapfrog", separable=True)
        self.backend = check_fused_integrator(
            backend, self.integrator, LeapfrogIntegrator, "leapfrog"
        )

    def _set_mass(self, mass: Any) -> None:
        self._mass_scalar: float | None = None
        self.register_buffer("_mass", None)  # a tensor mass is saved in the state dict
        if mass is None:
            return
        if isinstance(mass, numbers.Real) and not isinstance(mass, bool):
            m = float(mass)
            if not (math.isfinite(m) and m > 0):
                raise ConfigurationError(f"mass must be positive and finite, got {mass!r}")
            self._mass_scalar = m
            return
        if not isinstance(mass, torch.Tensor):
            raise TypeError(
                f"mass must be None, a positive number or a tensor, got {type(mass).__name__}"
            )
        check_tensor("mass", mass, non_empty=False)  # real: complex has no order
        square = mass.ndim == 2 and mass.shape[0] == mass.shape[1] > 1
        if square and not bool((mass > 0).all()):  # only a dense matrix has such entries
            try:  # named errors: not finite, asymmetric, not positive definite
                _mass_factors(mass, torch.float64)
            except ConfigurationError as err:
                raise ConfigurationError(
                    f"{err} (a square mass with entries <= 0 is a dense matrix, for chains "
                    "(B, D); a diagonal of 2-D events must be positive)"
                ) from err
        else:  # (a positive square one is a dense matrix or a 2-D diagonal: see init_state)
            check_mass(mass)
        self._mass = mass.detach().clone()

    def _dense_factors(
        self, mass: torch.Tensor, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`_mass_factors` of the dense `mass` for the chains `x`, on their device, computed
        once while the mass stays the same (compared with a copy: one host read)."""
        cached = vars(self).get("_dense_cache")
        key = (x.dtype, x.device)
        if (
            cached is not None
            and cached[0] == key
            and (cached[1].device, cached[1].dtype) == (mass.device, mass.dtype)
            and torch.equal(cached[1], mass)
        ):
            return cached[2]
        factor, inverse = _mass_factors(mass, x.dtype)
        factors = factor.to(x.device), inverse.to(x.device)
        self._dense_cache = (key, mass.detach().clone(), factors)
        return factors

    def __getstate__(self) -> dict[str, Any]:  # pickle, deepcopy: without the cache
        state = super().__getstate__()
        state.pop("_dense_cache", None)
        return state

    @property
    def mass(self) -> float | torch.Tensor | None:
        """The mass: ``None`` (identity), a float, a diagonal tensor or a dense matrix."""
        return self._mass if self._mass is not None else self._mass_scalar

    def init_state(self, x: torch.Tensor, ctx: SamplerContext) -> HMCState:
        check_int("n_leapfrog_steps", self.n_leapfrog_steps, minimum=1)  # assigned since?
        # an assigned "bogus" ran as "auto", an assigned "fused" beside a user's integrator
        check_fused_integrator(self.backend, self.integrator, LeapfrogIntegrator, "leapfrog")
        mass: Any = self._mass_scalar
        whitening = None
        if self._mass is not None and _is_dense(self._mass, x):
            whitening = self._dense_factors(self._mass, x)
            mass = None  # the trajectory runs in whitened coordinates, with a unit mass
        elif self._mass is not None:
            mass = self._mass.to(device=x.device, dtype=x.dtype)
            try:
                ok = torch.broadcast_shapes(mass.shape, x.shape[1:]) == x.shape[1:]
            except RuntimeError:
                ok = False
            if not ok:
                raise ShapeError(
                    f"mass of shape {tuple(mass.shape)} does not broadcast to the event shape "
                    f"{tuple(x.shape[1:])} (a dense (D, D) mass matrix needs chains (B, D))"
                )
            square = mass.ndim == 2 and mass.shape[0] == mass.shape[1]  # as given, one with
            if square and float(self._mass.min()) <= 0:  # entries <= 0 was read as a matrix
                raise ConfigurationError(
                    f"mass of shape {tuple(mass.shape)} has entries <= 0: a diagonal of the "
                    f"event shape {tuple(x.shape[1:])} must be positive (a dense (D, D) mass "
                    "matrix needs chains (B, D))"
                )
        tiny = torch.finfo(x.dtype).tiny  # below it 1/M overflows (float16: M < 6.1e-5)
        low = None if mass is None else mass if isinstance(mass, float) else float(mass.min())
        if low is not None and low < tiny:
            raise ConfigurationError(
                f"mass must be at least {tiny:.3g}, the smallest normal number of the chains' "
                f"dtype {x.dtype}, got {self.mass!r}: rescale the problem or use a wider dtype"
            )
        fused = None  # a user's integrator (a subclass too) runs its own steps
        if whitening is not None and self.backend == "fused":
            raise ConfigurationError(
                "backend='fused' takes a scalar or diagonal mass (the kernel has no dense mass "
                "matrix); use backend='eager' or 'auto'"
            )
        if type(self.integrator) is LeapfrogIntegrator and whitening is None:
            fused = resolve_fused(self.backend, "fused_leapfrog_step", x, owner=type(self).__name__)
        state = HMCState(
            x=x,
            energy=self._start_energy(x, ctx.model_kwargs),
            accepted=torch.zeros(x.shape[0], dtype=torch.bool, device=x.device),
            decided=self._undecided(x, ctx),
            p=torch.empty_like(x),
            mass=mass,
            sqrt_mass=(
                None
                if mass is None
                else (math.sqrt(mass) if isinstance(mass, float) else mass.sqrt())
            ),
            fused=fused,
            whitening=whitening,
            start=x,  # (each step's Metropolis choice is a new tensor: x is never written)
        )
        # the trajectory returns the energy gradient at its end point: keeping the one of
        # the current state saves one evaluation per iteration (a subclass's own
        # `integrate`, e.g. one written for 0.8.9's dict result, runs as another integrator)
        if fused is not None or type(self.integrator).integrate is LeapfrogIntegrator.integrate:
            state.grad = self.model_gradient(x, ctx.model_kwargs)
        return state

    def finish(self, state: HMCState, ctx: SamplerContext) -> None:
        """One `RuntimeWarning` when no chain accepted any proposal of the call (at least 100
        proposals; one sync): every trajectory ended at a non-finite or far higher Hamiltonian,
        so the chains did not move (a step size far too large for the target).

        Args:
            state: The final `HMCState` (its chains and `start`).
            ctx: This call's [`SamplerContext`][torchebm.core.SamplerContext] (``n_steps``).
        """
        start, n = state.start, ctx.n_steps
        if start is None or start.shape[0] * n < 100 or not torch.equal(state.x, start):
            return
        warn_user(
            f"{type(self).__name__}: none of the {start.shape[0]} chains accepted any of its {n} "
            "proposals (every trajectory ended at a non-finite or far higher Hamiltonian), so "
            f"the chains did not move; reduce step_size (now {self.step_size}) or "
            f"n_leapfrog_steps (now {self.n_leapfrog_steps})",
            RuntimeWarning,
        )

    def _hamiltonian(self, energy: torch.Tensor, p: torch.Tensor, mass: Any) -> torch.Tensor:
        r"""$H = E + \tfrac12 p^\top M^{-1} p$ per chain `(B,)` (one dot product, one add)."""
        flat = _flat(p)
        if isinstance(mass, float):  # a scalar mass scales the dot product
            return torch.add(energy, torch.linalg.vecdot(flat, flat), alpha=0.5 / mass)
        weighted = flat if mass is None else _flat(p / mass)
        return torch.add(energy, torch.linalg.vecdot(flat, weighted), alpha=0.5)

    def step(self, state: HMCState, ctx: SamplerContext) -> HMCState:
        eps = self.get_scheduled_value("step_size")
        p = cast(torch.Tensor, state.p).normal_(generator=ctx.generator)  # buffer reused
        if state.sqrt_mass is not None:
            p.mul_(state.sqrt_mass)
        h_cur = self._hamiltonian(cast(torch.Tensor, state.energy), p, state.mass)
        x_prop, p_prop, g_prop, u_prop = self._trajectory(state, p, eps, ctx)
        h_prop = self._hamiltonian(u_prop, p_prop, state.mass)
        state = self._metropolis(state, h_cur, h_prop, x_prop, u_prop, ctx)
        if state.grad is not None and g_prop is not None:
            accepted = cast(torch.Tensor, state.accepted)
            state.grad = torch.where(expand_t_like_x(accepted, x_prop), g_prop, state.grad)
        return state

    def _trajectory(
        self, state: HMCState, p: torch.Tensor, eps: float, ctx: SamplerContext
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """`(x', p', grad E(x'), E(x'))` at the end of one trajectory (the gradient is `None`
        when the integrator does not return it). Each is evaluated once.

        With a dense mass (`state.whitening`) the leapfrog runs in whitened coordinates (see
        `_whitened`): `p` is then the whitened momentum $q = L^{-1} p$, and so is the
        returned one."""
        x, conditioning, mass = state.x, ctx.model_kwargs, state.mass
        if state.fused is not None:
            # a plain analytic model is passed as is: torchebm.cuda then runs the whole
            # trajectory in one kernel with the closed-form gradient
            grad_fn = (
                self.model
                if not conditioning
                and isinstance(self.model, BaseModel)
                and not overridden(self, "model_gradient", BaseSampler)
                else (lambda z: self.model_gradient(z, conditioning))
            )
            x_new, p_new, g_new = state.fused(
                x, p, grad_fn, eps, self.n_leapfrog_steps, mass=mass, grad=state.grad
            )
            return x_new, p_new, g_new, self._energy(x_new, conditioning)
        gradient, grad0 = self.gradient_fn(ctx), state.grad
        energy: Callable[[torch.Tensor], torch.Tensor] = partial(
            self._energy, conditioning=conditioning
        )
        whitening = state.whitening
        if whitening is not None:  # a dense mass: the same leapfrog in whitened coordinates
            x, gradient, energy, grad0 = _whitened(whitening, x, gradient, energy, grad0)
        end_energy = None
        if grad0 is not None:  # the leapfrog: L gradients, its end point's energy
            res = cast(
                LeapfrogResult,
                self.integrator.integrate(
                    {"x": x, "p": p},
                    eps,
                    self.n_leapfrog_steps,
                    mass,
                    gradient=_ignore_time(gradient),
                    initial_gradient=grad0,
                    energy=lambda z, t: energy(z),
                ),
            )
            x, p, grad, end_energy = res.x, res.p, res.gradient, res.energy
        else:  # another separable symplectic integrator: its own result, the force form
            out = self.integrator.integrate(
                {"x": x, "p": p},
                eps,
                self.n_leapfrog_steps,
                mass,
                drift=lambda z, t: -gradient(z),  # new memory: g may be a view of z
                safe=False,
            )
            x, p, grad = out["x"], out["p"], None
        if whitening is not None:  # back to x (the gradient too): y = x L, grad_y = grad_x L^-T
            factor, inverse = whitening
            x = x @ inverse
            grad = None if grad is None else grad @ factor.mT
        return x, p, grad, self._energy(x, conditioning) if end_energy is None else end_energy

    def extra_repr(self) -> str:
        return (
            f"step_size={self.step_size}, n_leapfrog_steps={self.n_leapfrog_steps}, "
            f"backend={self.backend!r}, {super().extra_repr()}"
        )


class RiemannianManifoldHMC(_HMCBase):
    r"""Riemannian-manifold HMC with a position-dependent metric $G(x)$.

    Hamiltonian $H(x, p) = E(x) + \tfrac12 p^\top G(x)^{-1} p + \tfrac12\log|G(x)|$
    (the normalising term makes $e^{-H}$ marginalise to $e^{-E}$), momenta
    $p \sim \mathcal N(0, G(x))$, integrated by the generalised (implicit) leapfrog
    and corrected by a Metropolis test. $G$ is handled through its Cholesky factor;
    chains whose metric is not positive definite or whose proposal is non-finite reject;
    a chain whose current energy is NaN/inf is reported by the ``nan_policy``.
    States of any event shape are flattened to ``D = prod(event_shape)`` for the metric.

    **Unconverged implicit solves.** The generalised leapfrog solves two implicit
    equations per step by fixed-point iteration. A trajectory whose solves did not all
    converge within ``solver_max_iter`` iterations (see
    [`solver_converged`][torchebm.integrators.BaseSymplecticIntegrator.solver_converged])
    is not the reversible, volume-preserving implicit map, and the Metropolis test cannot
    correct the bias that causes (at a moderate step size it piled chains up at the mode
    of a Gaussian target). Each step therefore also integrates back from $(x', -p')$ and
    accepts only proposals whose forward and reverse solves converged and whose reverse
    trajectory returned to $(x, -p)$ (rejecting only unconverged forward trajectories
    would make chains stick where the solver fails, a bias of the opposite sign). Other
    proposals are rejected (the chain stays, as for a non-finite proposal), counted per
    step in the ``"unconverged_rate"`` diagnostic and per chain in
    ``unconverged_proposals``, and ``sample()`` ends with one ``RuntimeWarning`` giving
    the counts (one host sync). Many of them mean the step size is too large for the
    solver: reduce ``step_size`` or raise ``solver_max_iter`` of the
    ``GeneralisedLeapfrogIntegrator``. Cost: two trajectories per step with an implicit
    integrator (one with an explicit one, whose ``solver_converged`` is ``None``).
    ``sample(compile=True)`` gains nothing here (the implicit solves' loops break the graph:
    about 15 graphs per batch size and dtype, then eager speed); compile the model instead.

    Args:
        model: Energy model (its ``forward`` must be differentiable in ``x``).
        metric_fn: ``metric_fn(x) -> G`` of shape ``(B, D, D)``, symmetric positive
            definite and differentiable in ``x`` (not so at a starting point:
            `ConfigurationError`; not positive definite at a proposal: rejected; used as
            $(G + G^\top)/2$, so rounding asymmetries are harmless; a ``G`` that varies with
            ``x`` without a graph in it warns: the force would lack $\partial G/\partial x$).
        step_size: $\epsilon > 0$, float or scheduler.
        n_leapfrog_steps: Generalised-leapfrog steps per proposal (>= 1).
        solver_max_iter: Deprecated; configure a ``GeneralisedLeapfrogIntegrator``.
        solver_tol: Deprecated; as above.
        solver_check_every: Deprecated; as above.
        dtype: Chain dtype when the model has no parameters: float32 or float64 (torch has
            no float16/bfloat16 Cholesky; `sample()` raises `ConfigurationError` for them).
        device: Chain device when the model has no parameters.
        integrator: ``None`` (generalised leapfrog), a name or an instance of a
            non-separable symplectic integrator.
        n_steps: Default number of steps of ``sample()`` (class default 100).
        nan_policy: ``"warn"`` (default), ``"raise"`` or ``"resample"`` (see `BaseSampler`).

    Diagnostics: those of [`HamiltonianMonteCarlo`][torchebm.samplers.HamiltonianMonteCarlo]
    (``"acceptance_rate"`` leaves out chains restarted by ``nan_policy="resample"`` the same
    way) and ``"unconverged_rate"``: the fraction of chains whose proposal at that step was
    rejected because an implicit solve did not converge or the trajectory did not reverse
    (leading dim ``n_kept``).

    Example:
        >>> from torchebm.core import GaussianModel
        >>> model = GaussianModel(torch.zeros(2), torch.eye(2))
        >>> metric = lambda x: torch.eye(2).expand(x.shape[0], 2, 2) * (1 + x.square().sum(-1))[:, None, None]
        >>> rm = RiemannianManifoldHMC(model, metric, step_size=0.2, n_leapfrog_steps=3)
        >>> rm.sample(n_samples=4, n_steps=5).shape
        torch.Size([4, 2])

    References:
        Girolami, M. & Calderhead, B. (2011). Riemann manifold Langevin and Hamiltonian
        Monte Carlo methods. JRSS B 73(2).
        Zappa, E., Holmes-Cerfon, M. & Goodman, J. (2018). Monte Carlo on manifolds:
        sampling densities and integrating functions. CPAM 71(12) (the reversibility check).
        Brofos, J. A. & Lederman, R. R. (2021). Evaluating the implicit midpoint integrator
        for Riemannian Hamiltonian Monte Carlo. ICML.
    """

    diagnostic_keys: ClassVar[tuple[str, ...]] = (*_HMCBase.diagnostic_keys, "unconverged_rate")

    def __init__(
        self,
        model: Any,
        metric_fn: Any,
        step_size: Any = 1e-3,
        n_leapfrog_steps: int = 10,
        solver_max_iter: int | None = None,
        solver_tol: float | None = None,
        solver_check_every: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
        integrator: Any = None,
        *,
        n_steps: int | None = None,
        nan_policy: str = "warn",
    ):
        check_model_object(type(self).__name__, model)
        super().__init__(**forward_kwargs(locals(), super().__init__))
        if not callable(metric_fn):
            raise TypeError(f"metric_fn must be callable, got {type(metric_fn).__name__}")
        self.metric_fn = metric_fn
        self.step_size = step_size
        self.n_leapfrog_steps = check_int("n_leapfrog_steps", n_leapfrog_steps, minimum=1)
        legacy = [
            name
            for name, value in (
                ("solver_max_iter", solver_max_iter),
                ("solver_tol", solver_tol),
                ("solver_check_every", solver_check_every),
            )
            if value is not None
        ]
        if legacy:
            if integrator is not None:
                raise ConfigurationError(
                    f"{sorted(legacy)} cannot be combined with integrator=; configure the "
                    "GeneralisedLeapfrogIntegrator you pass instead"
                )
            warn_once(
                "RiemannianManifoldHMC.solver_kwargs",
                "RiemannianManifoldHMC(solver_max_iter=, solver_tol=, solver_check_every=) is "
                "deprecated; pass integrator=GeneralisedLeapfrogIntegrator(solver_max_iter=..., "
                "solver_tol=..., solver_check_every=..., dtype=<the sampler's dtype>) instead",
                DeprecationWarning,
            )
            integrator = GeneralisedLeapfrogIntegrator(
                device=self.device,
                dtype=self.dtype,
                solver_max_iter=8 if solver_max_iter is None else solver_max_iter,
                solver_tol=1e-6 if solver_tol is None else solver_tol,
                solver_check_every=0 if solver_check_every is None else solver_check_every,
            )
        self.integrator = self._symplectic(integrator, "generalised_leapfrog", separable=False)
        self._solver_report: dict[str, torch.Tensor | None] = {"counts": None}  # per call

    @property
    def unconverged_proposals(self) -> torch.Tensor | None:
        """`(B,)` int64: per chain, the proposals of the last `sample()` call rejected
        because an implicit solve did not converge or their trajectory did not reverse (see
        the class docstring; not those rejected because the metric was not positive definite
        on their trajectory); assigned when that call ends; `None` before the first call."""
        return self._solver_report["counts"]

    # ------------------------------------------------------------------ metric
    def _cholesky(
        self, x: torch.Tensor, state: HMCState | None = None, g: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L, ok)``: Cholesky factors ``(B, D, D)`` of ``G(x)`` (``g`` when given: one
        evaluation already made) and a ``(B,)`` success mask. With a ``state``, chains whose
        finite ``G(x)`` fails are cleared in its `metric_ok` (on the device; a non-finite
        ``G`` is a diverged trajectory's, not the metric's)."""
        b, d = x.shape[0], x[0].numel()
        g = self.metric_fn(x) if g is None else g
        if not isinstance(g, torch.Tensor):  # a numpy G failed in the dtype check, unnamed
            raise TypeError(f"metric_fn must return a tensor, got {type(g).__name__}")
        if g.shape != (b, d, d):
            raise ShapeError(
                f"metric_fn must return shape (B, D, D) = ({b}, {d}, {d}), got {tuple(g.shape)}"
            )
        if g.dtype != x.dtype:  # torch.bmm with the momenta would fail without naming it
            check_field_dtype("metric_fn(x)", g, x.dtype)
        # the factorisation reads one triangle while autograd's force sees both: with a G that
        # is not symmetric they were two Hamiltonians (a biased chain), so both see the same
        chol, info = torch.linalg.cholesky_ex(0.5 * (g + g.mT))
        if state is not None and state.metric_ok is not None:
            state.metric_ok &= (info == 0) | ~torch.isfinite(g).flatten(1).all(1)
        return chol, info == 0

    def _cached_cholesky(self, x: torch.Tensor, state: HMCState) -> torch.Tensor:
        """Cholesky factor of `G(x)`, reused while the integrator asks at the same `x`
        (its fixed-point iterations; the integrator never updates its tensors in place)."""
        cache = state.cholesky
        if cache is not None and cache[0] is x:
            return cache[1]
        with torch.no_grad():
            chol, _ = self._cholesky(x, state)
        state.cholesky = (x, chol)
        return chol

    def _detached_metric(self, x: torch.Tensor, xg: torch.Tensor, g: torch.Tensor) -> list[int]:
        """The chains whose G changes under a small move of their start (1e-5 (1 + |x|))
        while it has no autograd path from x: a detached metric (another law). ``g`` is
        ``metric_fn(xg)`` with autograd on, ``xg`` a copy of ``x`` that requires grad. A
        constant or per-chain constant G, a piecewise-constant one more than that step from
        its jumps and any G with a graph in x are not listed (a start within the step of a
        jump is, wrongly). One more metric call and one backward, once per `sample()`."""
        with torch.inference_mode(False), torch.enable_grad():
            linked = (
                g.requires_grad and autograd_grad(g.sum(), xg, allow_unused=True)[0] is not None
            )
        if linked:
            return []
        with torch.no_grad():
            moved = self.metric_fn(x + 1e-5 * (1 + x.abs()))
            changed = (moved != g.detach()).reshape(len(x), -1).any(1)
        return torch.nonzero(changed).flatten().tolist()

    def _kinetic_terms(self, x, p, state=None):
        """``(K + ½ log|G|, ok)`` per chain, the Hamiltonian without the potential;
        differentiable in ``x`` (``state``: see `_cholesky`)."""
        b = x.shape[0]
        chol, ok = self._cholesky(x, state)
        pf = p.reshape(b, -1, 1)
        sol = torch.cholesky_solve(pf, chol)
        kin = 0.5 * (pf * sol).sum(dim=(1, 2))
        half_logdet = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        return kin + half_logdet, ok

    def _force(self, x: torch.Tensor, p: torch.Tensor, conditioning: dict) -> torch.Tensor:
        r"""$-\partial H/\partial x$ at ``(x, p)`` from scratch (a model call, a metric call,
        its factorisation and one backward pass). Trajectories use `_cached_force`, which
        computes the same, unless a subclass overrides this method or `_kinetic_terms`."""
        with torch.inference_mode(False), torch.enable_grad():  # inference tensors are copied
            xg = autograd_ready(x).detach().requires_grad_(True)
            pg = autograd_ready(p).detach()
            u, rest = self.model_energy(xg, conditioning), self._kinetic_terms(xg, pg)[0]
            (g,) = autograd_grad((u + rest).sum(), xg)
        return -g  # not in place: the gradient of a linear energy is a broadcast view

    def _force_terms(self, x: torch.Tensor, state: HMCState, conditioning: dict) -> tuple[Any, ...]:
        r"""``(x, xg, L, ½ log|G|, ∇U)`` at the tensor ``x``: what `_force` computes there
        that does not depend on the momentum, built on the first call at ``x`` and then
        reused (the momentum solve of the generalised leapfrog asks for the force
        ``solver_max_iter`` times at the same ``x``, and the end point of a step starts the
        next one). ``L`` and ``½ log|G|`` keep their graph in ``xg`` (a copy of ``x`` that
        requires grad) for the momentum-dependent term; ``∇U`` is taken at once and the
        model's graph freed (``None`` when the energy has no graph in ``x``), or is the
        sampler's `model_gradient` when a subclass or the instance overrides it. The entry is
        keyed on the tensor object, as `_cached_cholesky`'s (the integrator never updates its
        tensors in place), and cleared at each trajectory with ``state.cholesky``."""
        cache = state.force_cache
        if cache is not None and cache[0] is x:
            return cache
        state.force_cache = None  # the last x's graph goes before this one is built
        own_gradient = overridden(self, "model_gradient", BaseSampler)
        with torch.inference_mode(False), torch.enable_grad():  # inference tensors are copied
            xg = autograd_ready(x).detach().requires_grad_(True)
            u = None if own_gradient else self.model_energy(xg, conditioning)  # model, metric
            chol = self._cholesky(xg)[0]
            half_logdet = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
            if own_gradient:
                grad_u = self.model_gradient(x, conditioning)
            elif u is not None and u.requires_grad:
                grad_u = autograd_grad(u.sum(), xg, allow_unused=True)[0]
            else:
                grad_u = None
        state.force_cache = (x, xg, chol, half_logdet, grad_u)
        return state.force_cache

    def _cached_force(
        self, x: torch.Tensor, p: torch.Tensor, state: HMCState, conditioning: dict
    ) -> torch.Tensor:
        r"""`_force` without recomputing what does not depend on ``p``:
        $-\partial H/\partial x = -\nabla U - \nabla_x(K + \tfrac12\log|G|)$ with
        $K = \tfrac12 p^\top G^{-1} p$. ``∇U``, ``G``'s Cholesky factor and its graph come
        from `_force_terms` (one model and one metric call per ``x`` instead of one each per
        fixed-point iteration); each call solves with ``p`` and back-propagates
        $K + \tfrac12\log|G|$ through the kept graph (``retain_graph``). The operations are
        `_force`'s, on the same values; only the sum of the model's and the metric's
        gradients at ``x`` is formed after their backward passes instead of inside one (equal
        bit for bit when the model and the metric each reach ``x`` through one node)."""
        _, xg, chol, half_logdet, grad_u = self._force_terms(x, state, conditioning)
        with torch.inference_mode(False), torch.enable_grad():
            pf = autograd_ready(p).detach().reshape(x.shape[0], -1, 1)
            kin = 0.5 * (pf * torch.cholesky_solve(pf, chol)).sum(dim=(1, 2))
            rest = kin + half_logdet  # `_kinetic_terms`, on the kept factor
            grad_rest = (
                autograd_grad(rest.sum(), xg, retain_graph=True, allow_unused=True)[0]
                if rest.requires_grad
                else None
            )
        if grad_u is None and grad_rest is None:  # `_force`'s autograd call failed here too
            raise RuntimeError(
                "neither the energy nor metric_fn(x) has a graph in x: the force of the "
                "Riemannian Hamiltonian needs a model whose forward is differentiable in x"
            )
        if grad_rest is None:
            return -cast(torch.Tensor, grad_u)  # new memory, as `_force`'s
        return -grad_rest if grad_u is None else -(grad_u + grad_rest)

    def _force_fn(self, state: HMCState, conditioning: dict) -> Callable[..., torch.Tensor]:
        """The integrator's ``force(x, p, t)``: `_cached_force`, unless a subclass (or the
        instance) overrides `_force` or `_kinetic_terms` (then its `_force`, called at every
        evaluation as the override expects)."""
        base = RiemannianManifoldHMC
        if not overridden(self, "_force", base) and not overridden(self, "_kinetic_terms", base):
            return lambda z, q, t: self._cached_force(z, q, state, conditioning)
        return lambda z, q, t: self._force(z, q, conditioning)

    def _velocity(self, x: torch.Tensor, p: torch.Tensor, state: HMCState) -> torch.Tensor:
        chol = self._cached_cholesky(x, state)
        return torch.cholesky_solve(p.reshape(x.shape[0], -1, 1), chol).reshape(x.shape)

    def init_state(self, x: torch.Tensor, ctx: SamplerContext) -> HMCState:
        check_int("n_leapfrog_steps", self.n_leapfrog_steps, minimum=1)  # assigned since?
        with outside_autocast(x.device.type):  # as `step`
            return self._start_state(x, ctx)

    def _start_state(self, x: torch.Tensor, ctx: SamplerContext) -> HMCState:
        if x.dtype in (torch.float16, torch.bfloat16):  # torch has no Cholesky in them
            raise ConfigurationError(
                f"RiemannianManifoldHMC needs float32 or float64 chains (the metric's Cholesky "
                f"factorisation), got dtype {x.dtype}: use dtype=torch.float32 or .float()"
            )
        with torch.inference_mode(False), torch.enable_grad():  # one call, with its graph in x
            xg = autograd_ready(x).detach().requires_grad_(True)
            g_graph = self.metric_fn(xg)
        # a chain started where G is not positive definite rejected every proposal, silently
        with torch.no_grad():
            g = g_graph.detach() if isinstance(g_graph, torch.Tensor) else g_graph
            bad = torch.nonzero(~self._cholesky(x, g=g)[1]).flatten().tolist()  # checks g too
            asym = (g - g.mT).flatten(1).abs().amax(1) > 1e-4 * g.flatten(1).abs().amax(1)
        detached = self._detached_metric(x, xg, g_graph)  # after `_cholesky`'s type and shape
        if bool(asym.any()):  # used as (G + G^T) / 2, not as written: a bug in metric_fn
            raise ConfigurationError(
                "metric_fn(x) must be symmetric, but G and G^T differ by more than 1e-4 of "
                f"G's largest entry at the starting points of chains "
                f"{torch.nonzero(asym).flatten().tolist()[:10]}"
            )
        if bad:
            raise ConfigurationError(
                "metric_fn(x) must be symmetric positive definite, but its Cholesky "
                f"factorisation failed at the starting points of chains {bad[:10]}"
                f"{'' if len(bad) <= 10 else f' (and {len(bad) - 10} more)'}"
            )
        if detached:
            warn_user(
                f"metric_fn(x) changes with x but has no graph in x at the starting points of "
                f"chains {detached[:10]} (numpy, .detach() or no_grad inside it?): the force "
                "of the Riemannian Hamiltonian then lacks dG/dx and the chains sample another "
                "law",
                RuntimeWarning,
            )
        no = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        counts = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)  # this call's
        # a start where the potential's gradient is NaN/inf (|x| at 0) never moves: its
        # energy is made NaN so that the loop reports it (the solves were blamed, silently)
        moves = torch.isfinite(self.model_gradient(x, ctx.model_kwargs)).flatten(1).all(1)
        return HMCState(
            x=x,
            energy=self._start_energy(x, ctx.model_kwargs, moves),
            accepted=no,
            decided=self._undecided(x, ctx),
            unconverged=no,
            n_unconverged=counts,
            n_not_pd=torch.zeros_like(counts),
        )

    def step(self, state: HMCState, ctx: SamplerContext) -> HMCState:
        """One proposal and its Metropolis test, outside an ambient autocast (the Cholesky
        factors and the momentum stay in the chains' dtype; the test needs every digit).

        Args:
            state: The chains' `HMCState` (position, energy, caches).
            ctx: This call's `SamplerContext` (generator, conditioning, step counters).

        Returns:
            The state after the step."""
        with outside_autocast(state.x.device.type):
            return self._step(state, ctx)

    def _step(self, state: HMCState, ctx: SamplerContext) -> HMCState:
        x, conditioning = state.x, ctx.model_kwargs
        eps = self.get_scheduled_value("step_size")
        b = x.shape[0]
        state.metric_ok = torch.ones(b, dtype=torch.bool, device=x.device)
        chol, ok = self._cholesky(x, state)
        xi = torch.randn(x.shape, generator=ctx.generator, device=x.device, dtype=x.dtype)
        p = torch.bmm(chol, xi.reshape(b, -1, 1)).reshape(x.shape)
        rest = self._kinetic_terms(x, p)[0]  # U is state.energy (no model call)
        h_cur = state.energy + rest
        x_prop, p_prop, converged = self._trajectory(x, p, eps, state, conditioning)
        unconverged = (
            torch.zeros_like(ok)
            if converged is None  # an explicit integrator: nothing to check
            else ~self._reversible(x, p, x_prop, p_prop, converged, eps, state, conditioning)
        )
        u_prop = self._energy(x_prop, conditioning)
        rest_prop, ok_prop = self._kinetic_terms(x_prop, p_prop, state)
        # a finite G not positive definite on a trajectory: not a solver failure, counted apart
        not_pd = ~state.metric_ok
        valid = ok & ok_prop & ~unconverged & ~not_pd
        h_prop = torch.where(valid, u_prop + rest_prop, torch.full_like(u_prop, math.inf))
        state.unconverged, state.metric_ok = unconverged & ~not_pd, None
        if state.n_unconverged is not None and state.n_not_pd is not None:
            state.n_unconverged.add_(state.unconverged)
            state.n_not_pd.add_(not_pd)
        return self._metropolis(state, h_cur, h_prop, x_prop, u_prop, ctx)

    def _trajectory(
        self, x: torch.Tensor, p: torch.Tensor, eps: Any, state: HMCState, conditioning: dict
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`(x', p', converged)`: the end point of one trajectory from `(x, p)` and the
        `(B,)` convergence of its implicit solves (`None` for an explicit integrator): the
        result's own `converged`, which a concurrent or nested call cannot change (an
        integrator whose result has none: its `solver_converged`)."""
        state.cholesky = state.force_cache = None
        out = self.integrator.integrate(
            {"x": x, "p": p},
            eps,
            self.n_leapfrog_steps,
            force=self._force_fn(state, conditioning),
            velocity=lambda z, q, t: self._velocity(z, q, state),
            safe=False,
        )
        state.cholesky = state.force_cache = None  # the force's holds the metric's graph
        if isinstance(out, LeapfrogResult) and out.converged is not None:
            return out.x, out.p, out.converged
        return out["x"], out["p"], getattr(self.integrator, "solver_converged", None)

    def _reversible(
        self,
        x: torch.Tensor,
        p: torch.Tensor,
        x_prop: torch.Tensor,
        p_prop: torch.Tensor,
        converged: torch.Tensor,
        eps: Any,
        state: HMCState,
        conditioning: dict,
    ) -> torch.Tensor:
        r"""`(B,)` bool: the trajectory `(x, p) -> (x', p')` is reversible: its implicit
        solves converged, and so did those of the trajectory from `(x', -p')`, which came
        back to `(x, -p)` within $\sqrt{\tau}$ (RMS, relative above 1; $\tau$ the solver's
        tolerance, see `solver_converged`). Rejecting only the unconverged forward
        trajectories would not be enough: a chain then sticks where solves fail, which
        biases it the other way (Zappa et al. 2018; Brofos & Lederman 2021). Costs one
        more trajectory per step."""
        finite = torch.isfinite(_flat(x_prop)).all(1) & torch.isfinite(_flat(p_prop)).all(1)
        keep = expand_t_like_x(finite, x)  # a non-finite proposal rejects anyway
        x_back, p_back, back_converged = self._trajectory(
            torch.where(keep, x_prop, x), torch.where(keep, -p_prop, -p), eps, state, conditioning
        )
        tol = float(getattr(self.integrator, "solver_tol", 0.0))
        tau = math.sqrt(tolerance(tol, x.dtype))
        # relative to the larger end of the move, the same for it and for its reverse: scaled
        # by the start alone, an outward move failed more often than the move back (in float32
        # with an ill-conditioned metric the chains then contracted)
        x_scale = torch.maximum(rms_rows(x), rms_rows(torch.where(keep, x_prop, x)))
        p_scale = torch.maximum(rms_rows(p), rms_rows(torch.where(keep, p_prop, p)))
        back = rows_close(x_back, x, tau, x_scale) & rows_close(p_back, -p, tau, p_scale)
        ok = converged & finite & back
        return ok if back_converged is None else ok & back_converged

    def compute_diagnostics(self, state: HMCState, ctx: SamplerContext) -> dict[str, torch.Tensor]:
        out = super().compute_diagnostics(state, ctx)
        if "unconverged_rate" in self.diagnostic_keys and state.unconverged is not None:
            out["unconverged_rate"] = state.unconverged.to(state.x.dtype).mean()
        return out

    def finish(self, state: HMCState, ctx: SamplerContext) -> None:
        """Store the call's counts as `unconverged_proposals` (at its end: a nested call
        does not replace them); one `RuntimeWarning` per cause if it rejected proposals
        because implicit solves failed or because the metric was not positive definite on
        their trajectory (one sync for both).

        Args:
            state: The final `HMCState` (its per-chain ``n_unconverged``/``n_not_pd`` counts).
            ctx: This call's [`SamplerContext`][torchebm.core.SamplerContext].
        """
        counts = self._solver_report["counts"] = state.n_unconverged
        if counts is None or state.n_not_pd is None:
            return
        both = torch.stack([counts, state.n_not_pd])
        (total, pd_total), (chains, pd_chains) = torch.stack(
            [both.sum(1), both.count_nonzero(1)]
        ).tolist()
        name, n = type(self).__name__, counts.shape[0]
        if pd_total:
            warn_user(
                f"{name}: {pd_total} proposals in {pd_chains} of {n} chains were rejected "
                "because metric_fn(x) was not symmetric positive definite (its Cholesky "
                "factorisation failed) on their trajectory; make the metric positive "
                "definite (and well conditioned in this dtype) wherever the chains can go",
                RuntimeWarning,
            )
        if total == 0:
            return
        integrator = type(self.integrator).__name__
        max_iter = getattr(self.integrator, "solver_max_iter", None)
        iters = "" if max_iter is None else f" (now {max_iter})"
        warn_user(
            f"{name}: {total} proposals in {chains} of {n} chains "
            f"were rejected because the implicit solves of {integrator} did not converge or "
            "the trajectory did not reverse (an unconverged step is not reversible; counted "
            "per chain in "
            f"{name}.unconverged_proposals and per step in the "
            "'unconverged_rate' diagnostic). Reduce step_size or raise solver_max_iter"
            f"{iters} of the integrator; if its solves converge (solver_converged) and the "
            "trajectories still do not come back, the metric is too ill-conditioned for "
            f"{state.x.dtype} and the kept samples are biased: use "
            f"{'a wider dtype or ' if state.x.dtype != torch.float64 else ''}"
            "a better conditioned metric",
            RuntimeWarning,
        )

    def extra_repr(self) -> str:
        return (
            f"step_size={self.step_size}, n_leapfrog_steps={self.n_leapfrog_steps}, "
            f"{super().extra_repr()}"
        )
