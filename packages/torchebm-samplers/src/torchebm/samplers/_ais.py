r"""Annealed importance sampling (AIS) of $\log Z$ and its reverse (bidirectional Monte Carlo).

The path is geometric between a Gaussian base $f_0(x) = e^{-E_0(x)}$,
$E_0(x) = \|x - \mu_0\|^2 / (2 s_0^2)$ (normaliser $Z_0 = (2\pi s_0^2)^{D/2}$), and the
target $f_1 = e^{-E}$:

$$
f_\beta(x) = \exp\!\big(-(1-\beta) E_0(x) - \beta E(x)\big), \qquad
0 = \beta_0 < \beta_1 < \dots < \beta_K = 1 .
$$
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from torchebm.core import BaseModel, TorchEBMModule, expand_t_like_x
from torchebm.core._base_model import energy_gradient
from torchebm.core._module import check_float_dtype, warn_user
from torchebm.core.errors import (
    ConfigurationError,
    NonFiniteError,
    ShapeError,
    check_energies,
    check_finite,
    check_finite_tensor,
    check_generator,
    check_in,
    check_int,
    check_positive,
    check_tensor,
)
from torchebm.flows._utils import (
    ENERGY_CALL,
    check_model_object,
    conditioning_rows,
    explain_model_error,
    outside_autocast,
)
from torchebm.integrators._state import autograd_ready, call_own_gradient, own_gradient
from torchebm.samplers._hmc import HamiltonianMonteCarlo
from torchebm.samplers._langevin import LangevinDynamics

__all__ = ["AnnealedImportanceSampling", "AISResult", "annealed_importance_sampling"]

TRANSITIONS = ("hmc", "mala", "langevin")
SCHEDULES = ("sigmoid", "linear")


@dataclass(frozen=True)
class AISResult:
    r"""An AIS estimate of $\log Z$.

    Attributes:
        log_z: $\log Z_0 + \log \frac1n \sum_i w_i$ (forward: a stochastic lower bound,
            $\mathbb E[\widehat{\log Z}] \le \log Z$); for the reverse direction
            $\log Z_0 - \log \frac1n \sum_i w_i$ (a stochastic upper bound). A float.
        standard_error: Delta-method standard error of ``log_z``:
            $\operatorname{sd}(w) / (\sqrt n\, \bar w)$. It is itself estimated from the
            weights: when they are heavy-tailed (``effective_sample_size`` a small fraction
            of ``n_chains``, e.g. a base narrower than the target) the chains that would
            carry the largest weights are often missing, and then ``log_z`` and this error
            are both too small; add chains until it stabilises. It cannot exceed 1 (nat)
            whatever the weights (1 when one chain carries them all), so it says little
            once ``effective_sample_size`` is small: a ``RuntimeWarning`` says so when that
            is under 10 (half the chains, with fewer than 20; a larger one does not prove the
            error small). ``inf`` with one chain (nothing to
            estimate a spread from).
        log_weights: Per-chain log importance weights ``(n_chains,)`` (float64); $-\infty$
            (weight 0, counted in ``log_z`` and ``effective_sample_size``) for a chain that
            met $E = +\infty$ (outside a bounded support).
        samples: Final states of the chains ``(n_chains, *event_shape)``.
        effective_sample_size: $(\sum w)^2 / \sum w^2$.
        acceptance_rate: Mean Metropolis acceptance over all transitions (``None`` for the
            unadjusted ``"langevin"`` transition).
        direction: ``"forward"`` or ``"reverse"``.
    """

    log_z: float
    standard_error: float
    log_weights: torch.Tensor = field(repr=False)  # per chain: not in the repr
    samples: torch.Tensor = field(repr=False)
    effective_sample_size: float
    acceptance_rate: float | None
    direction: str


class _AnnealedEnergy(BaseModel):
    r"""$E_\beta(x) = (1-\beta)E_0(x) + \beta E(x)$ with a settable ``beta``."""

    def __init__(self, target: Any, mean: torch.Tensor, std: float, dtype: torch.dtype, device):
        super().__init__(dtype=dtype, device=device)
        self.target = target
        self.mean = mean
        self.std = std
        self.beta = 0.0
        self.model_kwargs: dict[str, Any] = {}  # the conditioning of every call of the model

    def base_energy(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x - self.mean).reshape(x.shape[0], -1).square().sum(1) / self.std**2

    def target_energy(self, x: torch.Tensor) -> torch.Tensor:
        kwargs = self.model_kwargs
        try:
            energies = self.target(x, **kwargs)
        except TypeError as err:  # names a model refusing model(x, **model_kwargs)
            explain_model_error("AnnealedImportanceSampling", self.target, err, ENERGY_CALL, kwargs)
            raise
        return check_energies("model", energies, x.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.beta
        return (1.0 - b) * self.base_energy(x) + b * self.target_energy(x)

    def mix_energy(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        r"""$E_\beta(x)$ from the target's energies ``target`` $= E(x)$ `(B,)` (no model call)."""
        b = self.beta
        return (1.0 - b) * self.base_energy(x) + b * target

    def target_gradient(self, x: torch.Tensor) -> torch.Tensor:
        r"""$\nabla E(x)$, shaped like ``x`` (the model's own ``gradient`` when it has one, a
        DDP model's module's: a ``(B, 1)`` or flattened one would broadcast into the annealed
        gradient)."""
        grad = own_gradient(self.target)
        if grad is not None:
            args = (self.model_kwargs,) if self.model_kwargs else ()  # positional, as before
            g = call_own_gradient(grad, x, *args)
            if not isinstance(g, torch.Tensor) or g.shape != x.shape:
                got = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
                raise ShapeError(
                    f"model.gradient(x) of {type(self.target).__name__} must return a tensor "
                    f"shaped like x {tuple(x.shape)}, got {got}"
                )
            return g
        with torch.inference_mode(False), torch.enable_grad():  # an inference x is copied
            xg = autograd_ready(x).detach().requires_grad_(True)
            return energy_gradient(self.target_energy(xg), xg, "model")

    def gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        return self.mix_gradient(x, self.known_gradient(x, None))

    def known_gradient(self, x: torch.Tensor, known: torch.Tensor | None) -> torch.Tensor | None:
        r"""$\nabla E(x)$: ``known`` when given, else evaluated; ``None`` at $\beta = 0$,
        where $\nabla E_\beta$ does not depend on it (the target is not evaluated)."""
        if known is not None or self.beta == 0.0:
            return known
        return self.target_gradient(x)

    def mix_gradient(self, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        r"""$\nabla E_\beta(x)$ from the target's gradient ``target`` $= \nabla E(x)$
        (``None`` at $\beta = 0$)."""
        b = self.beta
        g0 = (x - self.mean) / self.std**2
        return g0 if b == 0.0 or target is None else (1.0 - b) * g0 + b * target


#: the target's energies `(B,)` at the chains and its gradient there (`None`: not evaluated)
_Known = tuple[torch.Tensor, torch.Tensor | None]


def _schedule(schedule: Any, n: int, name: str = "schedule") -> torch.Tensor:
    """The ``K + 1`` inverse temperatures ``0 = beta_0 < ... < beta_K = 1`` (float64);
    ``name`` is the argument the error names (``"betas"`` takes no schedule name)."""
    if isinstance(schedule, str) and name == "schedule":
        check_in("schedule", schedule, SCHEDULES)
        u = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
        if schedule == "linear":
            return u
        s = torch.sigmoid(8.0 * (u - 0.5))  # Grosse et al. (2015): sigmoid, delta = 4
        return (s - s[0]) / (s[-1] - s[0])
    try:  # None or a string list failed inside as_tensor without naming schedule
        betas = torch.as_tensor(schedule, dtype=torch.float64).flatten().cpu()
    except (TypeError, ValueError, RuntimeError):
        betas = torch.zeros(0, dtype=torch.float64)
    ok = betas.numel() >= 2 and bool((betas.diff() > 0).all())
    if not ok or float(betas[0]) != 0.0 or float(betas[-1]) != 1.0:
        names = "'sigmoid', 'linear' or " if name == "schedule" else ""
        raise ConfigurationError(
            f"{name} must be {names}an increasing sequence from 0.0 to 1.0, got {schedule!r}"
            + ("" if names else " (assign schedule='sigmoid' or 'linear' for a named schedule)")
        )
    return betas


def _warn_ignored_n_intermediate(n: Any, betas: torch.Tensor) -> None:
    """A `UserWarning` when ``n`` differs from the ``K`` of the custom ``betas`` (it is ignored)."""
    k = betas.numel() - 1
    if n != k:
        warn_user(
            f"AnnealedImportanceSampling: n_intermediate={n!r} is ignored: the custom schedule "
            f"has {k + 1} betas, so K = {k} steps (assign schedule='sigmoid' or 'linear' for "
            "n_intermediate to set K, or assign betas for a new custom schedule)"
        )


def _check_log_weights(log_w: torch.Tensor) -> None:
    r"""NaN/+inf log-weights raise; $-\infty$ is weight 0 (a chain that left the support of
    a target with $E = +\infty$ outside it), unless every chain has it."""
    try:
        check_finite_tensor("log_weights", log_w.clamp(min=torch.finfo(log_w.dtype).min))
    except NonFiniteError as err:  # the base energy is finite: the model's made them
        raise NonFiniteError(
            f"{err}: the model's energy was NaN or -inf in those chains (an energy of +inf "
            "outside the target's support is accepted: weight 0)",
            indices=err.indices,
        ) from None
    if bool((log_w == -math.inf).all()):
        raise NonFiniteError(
            f"log_weights are -inf (weight 0) in all {log_w.shape[0]} chains: every chain "
            "reached E = +inf (outside the target's support); use more chains, or a base "
            "(base_mean, base_std) that covers the support"
        )


def _log_mean_exp_se(log_w: torch.Tensor) -> tuple[float, float, float]:
    """``(log mean w, delta-method SE of it, ESS)`` from log weights (float64)."""
    n = log_w.shape[0]
    top = log_w.max()
    w = torch.exp(log_w - top)
    mean = w.mean()
    se = float(w.std() / (math.sqrt(n) * mean)) if n > 1 else float("inf")
    ess = float(w.sum().square() / w.square().sum())
    return float(top + mean.log()), se, ess


def _event_shape(dim: Any) -> tuple[int, ...]:
    """The event shape from ``dim``: a positive int or a non-empty sequence of them."""
    if isinstance(dim, Sequence) and not isinstance(dim, str) and len(dim) > 0:
        return tuple(check_int(f"dim[{i}]", v, minimum=1) for i, v in enumerate(dim))
    if isinstance(dim, Sequence) and not isinstance(dim, str):
        raise ConfigurationError(f"dim must be a positive int or shape, got {dim!r}")
    return (check_int("dim", dim, minimum=1),)


class AnnealedImportanceSampling:
    r"""Annealed importance sampling of $\log Z = \log\int e^{-E(x)}\,dx$.

    Along the geometric path $f_\beta = e^{-(1-\beta)E_0 - \beta E}$ from the Gaussian
    base $\mathcal N(\mu_0, s_0^2 I)$ (see the module docstring), each of ``n_chains``
    chains starts from the base and, for $k = 1, \dots, K$, accumulates

    $$
    \log w \mathrel{+}= (\beta_k - \beta_{k-1})\,\big(E_0(x) - E(x)\big)
    $$

    and then moves with a transition that leaves $f_{\beta_k}$ invariant. Then
    $\mathbb E[w] = Z / Z_0$ exactly, and $\widehat{\log Z} = \log Z_0 + \log\bar w$ with
    the delta-method standard error $\operatorname{sd}(w)/(\sqrt n\,\bar w)$. By Jensen,
    $\mathbb E\,\widehat{\log Z} \le \log Z$: a stochastic lower bound.

    `reverse` runs the same path backwards from exact samples of $e^{-E}/Z$ (when the
    user has them); $\mathbb E[w_{\text{rev}}] = Z_0/Z$, so
    $\log Z_0 - \log\bar w_{\text{rev}}$ is a stochastic upper bound; the two directions
    sandwich $\log Z$ (bidirectional Monte Carlo) and their gap bounds the error of both.

    Transitions (``n_transition_steps`` per temperature):

    * ``"hmc"``: `HamiltonianMonteCarlo` (leapfrog + Metropolis; exact);
    * ``"mala"``: Metropolis-adjusted Langevin, $x' = x - \epsilon\nabla E_\beta(x) +
      \sqrt{2\epsilon}\,\xi$ accepted with the Metropolis-Hastings ratio (exact; one
      energy and one gradient of the model per proposal while every chain has positive
      weight: the values at the chains are kept from the step that moved them there, the
      log-weights' energies too);
    * ``"langevin"``: `LangevinDynamics` (unadjusted): it leaves $f_\beta$ invariant only
      up to $O(\epsilon)$, so the estimate carries a bias that does not vanish with more
      chains. Use it to compare, not for exact numbers; it rejects nothing, so with a
      target of bounded support ($E = +\infty$ outside) its chains leave the support.

    A chain at $E = +\infty$ has weight 0 (log-weight $-\infty$) and is no longer moved; the
    transitions of the others reject proposals of infinite energy. NaN or $+\infty$
    log-weights, or $-\infty$ in every chain, raise `NonFiniteError`.

    Args:
        model: Energy $E: (B, *\text{event}) \to (B,)$ (a `BaseModel` or any module /
            callable; its ``gradient`` is used when it has one, else autograd).
        n_intermediate: Number of annealing steps $K$ (>= 1).
        transition: ``"hmc"``, ``"mala"`` or ``"langevin"``.
        step_size: Step of the transition ($\epsilon$ of MALA/Langevin, the leapfrog step
            of HMC), > 0.
        n_leapfrog_steps: Leapfrog steps per HMC proposal.
        n_transition_steps: Transitions per temperature.
        schedule: ``"sigmoid"`` (Grosse et al. 2015), ``"linear"`` or an increasing
            sequence of betas from 0.0 to 1.0 (then ``n_intermediate`` is ignored and set to
            its ``K``: another value than the default and ``K`` warns that it is ignored).
        base_mean: $\mu_0$, a number or a tensor of the event shape.
        base_std: $s_0 > 0$.

    Example:
        >>> import math, torch
        >>> from torchebm.core import GaussianModel
        >>> model = GaussianModel(torch.zeros(2), 0.5 * torch.eye(2), dtype=torch.float64)
        >>> ais = AnnealedImportanceSampling(model, n_intermediate=100, step_size=0.3)
        >>> r = ais.estimate(n_chains=200, dim=2, generator=torch.Generator().manual_seed(0))
        >>> abs(r.log_z - math.log(math.pi)) < 4 * r.standard_error + 1e-3
        True

    References:
        Neal, R. M. (2001). Annealed importance sampling. Statistics and Computing 11(2).
        Grosse, R. B., Ghahramani, Z. & Adams, R. P. (2015). Sandwiching the marginal
        likelihood using bidirectional Monte Carlo. arXiv:1511.02543.
        Roberts, G. O. & Tweedie, R. L. (1996). Exponential convergence of Langevin
        distributions and their discrete approximations. Bernoulli 2(4).
    """

    def __init__(
        self,
        model: Any,
        *,
        n_intermediate: int = 200,
        transition: str = "hmc",
        step_size: float = 0.1,
        n_leapfrog_steps: int = 5,
        n_transition_steps: int = 1,
        schedule: Any = "sigmoid",
        base_mean: float | torch.Tensor = 0.0,
        base_std: float = 1.0,
    ):
        if not callable(model):
            raise TypeError(f"model must be a callable energy, got {type(model).__name__}")
        self.model = check_model_object("AnnealedImportanceSampling", model)
        self.n_intermediate = check_int("n_intermediate", n_intermediate, minimum=1)
        self.transition = check_in("transition", transition, TRANSITIONS)
        self.step_size = check_positive("step_size", step_size)
        self.n_leapfrog_steps = check_int("n_leapfrog_steps", n_leapfrog_steps, minimum=1)
        self.n_transition_steps = check_int("n_transition_steps", n_transition_steps, minimum=1)
        betas = _schedule(schedule, self.n_intermediate)
        #: ``"sigmoid"``, ``"linear"`` or the custom betas (float64): with `n_intermediate`,
        #: what `betas` is computed from (both may be assigned: read at every estimate)
        self.schedule: str | torch.Tensor = schedule if isinstance(schedule, str) else betas
        if not isinstance(schedule, str):  # a custom schedule sets K (was kept, and shown)
            if n_intermediate != 200:  # the default: not given
                _warn_ignored_n_intermediate(n_intermediate, betas)
            self.n_intermediate = betas.numel() - 1
        self.base_std = check_positive("base_std", base_std)
        self.base_mean = _check_base_mean(base_mean)

    def __setstate__(self, state: dict) -> None:
        if "schedule" not in state and "betas" in state:  # pickled when betas was stored
            state["schedule"] = state.pop("betas")
            shown = state.pop("_schedule_shown", "custom")
            state["schedule"] = shown if shown in SCHEDULES else state["schedule"]
        if isinstance(state.get("schedule"), torch.Tensor):  # the n_intermediate it ignored
            state["n_intermediate"] = state["schedule"].numel() - 1
        self.__dict__.update(state)

    @property
    def betas(self) -> torch.Tensor:
        r"""The ``K + 1`` inverse temperatures $0 = \beta_0 < \dots < \beta_K = 1$ (float64)
        of `schedule` and `n_intermediate` as they are now (an assigned value is checked as
        the constructor checks it).

        Assigning an increasing sequence from 0.0 to 1.0 sets a custom `schedule` of those
        betas and `n_intermediate` to its ``K`` (a schedule name is assigned to `schedule`)."""
        n = check_int("n_intermediate", self.n_intermediate, minimum=1)
        return _schedule(self.schedule, n)

    @betas.setter
    def betas(self, betas: Any) -> None:
        custom = _schedule(betas, 1, name="betas")
        self.schedule, self.n_intermediate = custom, custom.numel() - 1

    def _check_hyperparameters(self) -> torch.Tensor:
        """The constructor's checks of the hyper-parameters, at every estimate (a value may
        have been assigned since); returns `betas`."""
        check_in("transition", self.transition, TRANSITIONS)
        check_positive("step_size", self.step_size)
        check_int("n_leapfrog_steps", self.n_leapfrog_steps, minimum=1)
        check_int("n_transition_steps", self.n_transition_steps, minimum=1)
        check_positive("base_std", self.base_std)
        _check_base_mean(self.base_mean)
        betas = self.betas
        if not isinstance(self.schedule, str):  # an n_intermediate assigned since is ignored
            _warn_ignored_n_intermediate(self.n_intermediate, betas)
        return betas

    def __repr__(self) -> str:
        schedule = self.schedule if isinstance(self.schedule, str) else "custom"
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, "
            f"n_intermediate={self.n_intermediate}, transition={self.transition!r}, "
            f"step_size={self.step_size}, n_leapfrog_steps={self.n_leapfrog_steps}, "
            f"n_transition_steps={self.n_transition_steps}, schedule={schedule!r}, "
            f"base_mean={self.base_mean}, base_std={self.base_std})"
        )

    # ------------------------------------------------------------------ helpers
    def _base_mean(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.base_mean, dtype=x.dtype, device=x.device)
        event = tuple(x.shape[1:])
        # broadcasts to the event shape (torch.broadcast_shapes would import sympy)
        ms = tuple(mean.shape)
        ok = len(ms) <= len(event) and all(
            a in (1, b) for a, b in zip(ms[::-1], event[::-1], strict=False)
        )
        if not ok:
            raise ShapeError(
                f"base_mean of shape {tuple(mean.shape)} does not broadcast to the event shape "
                f"{tuple(x.shape[1:])}"
            )
        return mean

    def _annealed(self, x: torch.Tensor) -> _AnnealedEnergy:
        return _AnnealedEnergy(self.model, self._base_mean(x), self.base_std, x.dtype, x.device)

    def _kernel(self, energy: _AnnealedEnergy, x: torch.Tensor) -> Any:
        if self.transition == "hmc":
            return HamiltonianMonteCarlo(
                energy, step_size=self.step_size, n_leapfrog_steps=self.n_leapfrog_steps,
                dtype=x.dtype, device=x.device, backend="eager", nan_policy="raise",
            )  # fmt: skip
        if self.transition == "langevin":
            return LangevinDynamics(
                energy, step_size=self.step_size, dtype=x.dtype, device=x.device,
                backend="eager", nan_policy="raise",
            )  # fmt: skip
        return None

    def _move(
        self, kernel: Any, energy: _AnnealedEnergy, x: torch.Tensor, gen, known: _Known | None
    ) -> tuple:
        """``n_transition_steps`` transitions at ``energy.beta``; returns ``(x, accepted,
        known)``. ``known``: the target's ``(E(x), grad E(x) or None)`` where the caller has
        them (not evaluated again), else ``None``; the result's are those at the new ``x``
        (MALA evaluates them at its proposals), ``None`` after an HMC or Langevin move."""
        n = self.n_transition_steps
        if kernel is None:
            known = known if known is not None else (energy.target_energy(x), None)
            acc = torch.zeros((), dtype=torch.float64, device=x.device)
            for _ in range(n):
                x, a, known = _mala_step(energy, x, known, self.step_size, gen)
                acc = acc + a.to(torch.float64).mean()
            return x, acc / n, known
        if isinstance(kernel, HamiltonianMonteCarlo):
            out, diag = kernel.sample(x=x, n_steps=n, return_diagnostics=True, generator=gen)
            return out, diag["acceptance_rate"].to(torch.float64).mean(), None
        return kernel.sample(x=x, n_steps=n, generator=gen), None, None

    def _move_alive(
        self,
        kernel: Any,
        energy: _AnnealedEnergy,
        x: torch.Tensor,
        log_w: torch.Tensor,
        gen,
        known: _Known,
    ) -> tuple:
        r"""`_move` of the chains of positive weight only: a chain outside the target's
        support ($E = +\infty$, log-weight $-\infty$) keeps weight 0 wherever it moves, and
        its infinite energy stopped the kernel (``nan_policy="raise"``). The per-chain values of
        the conditioning (`conditioning_rows`: tensors or arrays with ``B`` rows, lists of
        ``B`` items, also inside dicts and tuples) follow their chains. ``known`` serves a
        move of every chain; a subset evaluates its own (the batch it always did) and the
        result's ``known`` is then ``None``."""
        alive = log_w > -math.inf
        if bool(alive.all()):
            return self._move(kernel, energy, x, gen, known)
        if not bool(alive.any()):
            return x, None, None
        x, kwargs, b = x.clone(), energy.model_kwargs, x.shape[0]
        rows = alive.nonzero().flatten()
        energy.model_kwargs = {k: conditioning_rows(k, v, rows, b) for k, v in kwargs.items()}
        try:
            moved, acc, _ = self._move(kernel, energy, x[alive], gen, None)
        finally:
            energy.model_kwargs = kwargs
        x = x.to(moved.dtype)  # a wider gradient promoted the moved chains, as it does all
        x[alive] = moved
        return x, acc, None

    def _run(
        self, x: torch.Tensor, reverse: bool, gen, model_kwargs: dict | None, betas: list[float]
    ) -> AISResult:
        if model_kwargs is not None and not isinstance(model_kwargs, dict):
            raise TypeError(
                f"model_kwargs must be a dict of keyword arguments of the model or None, got "
                f"{type(model_kwargs).__name__}"
            )
        energy = self._annealed(x)
        energy.model_kwargs = dict(model_kwargs or {})
        kernel = self._kernel(energy, x)
        if reverse:  # log w += (b_k - b_{k-1}) (E - E0): E[w] = Z0 / Z
            betas = betas[::-1]
        log_w = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        acc_sum, n_moves = torch.zeros((), dtype=torch.float64, device=x.device), 0  # on device
        known: _Known | None = None  # the target's (E, grad E) at x where the last move had them
        # outside an ambient autocast: the weights and the transitions' Metropolis tests
        # compare energies, which half precision rounds
        with torch.no_grad(), outside_autocast(x.device.type):
            for k in range(1, len(betas)):
                base = energy.base_energy(x)
                known = known if known is not None else (energy.target_energy(x), None)
                gap = (base - known[0]).to(torch.float64)
                log_w += (betas[k] - betas[k - 1]) * gap
                if k < len(betas) - 1:
                    energy.beta = betas[k]
                    x, acc, known = self._move_alive(kernel, energy, x, log_w, gen, known)
                    if acc is not None:
                        acc_sum, n_moves = acc_sum + acc, n_moves + 1
        _check_log_weights(log_w)
        log_z0 = 0.5 * x[0].numel() * math.log(2 * math.pi * self.base_std**2)
        lme, se, ess = _log_mean_exp_se(log_w)
        n = x.shape[0]
        if n > 1 and ess < min(10.0, n / 2):
            warn_user(
                f"AnnealedImportanceSampling: the effective sample size of the weights is "
                f"{ess:.3g} of {n} chains: the estimate rests on a few chains, and its "
                f"standard_error ({se:.3g}; at most 1 by construction) does not bound its error "
                f"(log Z is likely too {'large' if reverse else 'small'}). Use more "
                "temperatures (n_intermediate), a base (base_mean, base_std) closer to the "
                "target, or more chains",
                RuntimeWarning,
            )
        return AISResult(
            log_z=log_z0 - lme if reverse else log_z0 + lme,
            standard_error=se,
            log_weights=log_w,
            samples=x,
            effective_sample_size=ess,
            acceptance_rate=None if n_moves == 0 else float(acc_sum) / n_moves,
            direction="reverse" if reverse else "forward",
        )

    # ------------------------------------------------------------------ public
    def estimate(
        self,
        n_chains: int,
        dim: int | Sequence[int],
        *,
        dtype: torch.dtype | None = None,
        device: Any = None,
        generator: torch.Generator | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> AISResult:
        r"""Forward AIS from the base: the estimate of $\log Z$ (a stochastic lower bound).

        Args:
            n_chains: Number of independent chains (>= 2 for a standard error).
            dim: Event shape (an int $D$ or a tuple).
            dtype: Chain dtype (default: the model's, as for the samplers: its parameters'
                or, without parameters, its ``dtype``; float32 for a plain callable).
            device: Chain device (default: the model's, else the CPU).
            generator: Randomness of the base draws and of every transition.
            model_kwargs: Conditioning of every model call, ``model(x, **model_kwargs)``
                (e.g. ``{"y": labels}`` of a conditional energy $E(x \mid y)$). A tensor or
                array with ``n_chains`` rows or a list of ``n_chains`` items (also inside a
                dict or tuple) is per chain; for $\log Z(y)$ give every chain the same
                $y$ (chains with different conditions estimate the log of their mean $Z$).

        Returns:
            An `AISResult` with ``direction="forward"``.
        """
        betas = self._check_hyperparameters().tolist()
        n = check_int("n_chains", n_chains, minimum=1)
        shape = _event_shape(dim)
        check_generator(generator)
        dtype, device = _chain_placement(self.model, dtype, device)
        z = torch.randn((n, *shape), generator=generator, dtype=dtype, device=device)
        x = self._base_mean(z) + self.base_std * z
        return self._run(x, False, generator, model_kwargs, betas)

    def reverse(
        self,
        samples: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> AISResult:
        r"""Reverse AIS from exact samples of $e^{-E}/Z$: a stochastic upper bound.

        Args:
            samples: Exact draws from the target ``(n_chains, *event_shape)``.
            generator: Randomness of the transitions.
            model_kwargs: Conditioning of every model call (as in `estimate`; the
                ``samples`` are exact draws of that condition's $e^{-E(x \mid y)}/Z(y)$).

        Returns:
            An `AISResult` with ``direction="reverse"``; its ``log_z`` is
            $\log Z_0 - \log\bar w_{\text{rev}}$.
        """
        betas = self._check_hyperparameters().tolist()
        check_tensor("samples", samples, min_ndim=2, floating=True)
        check_finite_tensor("samples", samples)
        check_generator(generator, samples.device, of="samples")
        x = samples.detach().clone()
        return self._run(x, True, generator, model_kwargs, betas)


def _check_base_mean(base_mean: Any) -> float | torch.Tensor:
    """``base_mean`` if it is a finite real number (not a bool) or a finite float tensor."""
    if isinstance(base_mean, torch.Tensor):
        check_finite_tensor("base_mean", check_tensor("base_mean", base_mean, floating=True))
    else:
        if not isinstance(base_mean, numbers.Real):  # a list: say a tensor is accepted
            raise TypeError(f"base_mean must be a number or a tensor, got {base_mean!r}")
        check_finite("base_mean", base_mean)  # a real number (not a bool), finite
    return base_mean


def _chain_placement(model: Any, dtype: Any, device: Any) -> tuple[torch.dtype, Any]:
    """The chains' dtype and device: those given, else the model's (a `TorchEBMModule`'s
    placement; another module's first parameter), else float32 on the default device."""
    ref: Any = model if isinstance(model, TorchEBMModule) else None
    if ref is None and isinstance(model, torch.nn.Module):
        ref = next(model.parameters(), None)
    if dtype is None:
        dtype = torch.float32 if ref is None else ref.dtype
    dtype = check_float_dtype("dtype", dtype)
    return dtype, device if device is not None or ref is None else ref.device


def _mala_step(
    energy: _AnnealedEnergy, x: torch.Tensor, known: _Known, eps: float, gen: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, _Known]:
    r"""One Metropolis-adjusted Langevin step at ``energy.beta`` from ``x``, where the target's
    ``(E, grad E or None)`` are ``known``; returns ``(x, accepted, known at the new x)``. The
    target is evaluated at the proposal only: one energy and one gradient per step, not
    three and two (for a deterministic model that computes each row on its own)."""
    fresh = known[1] is None  # the model's own outputs (not copies): its next calls may reuse
    et_x = known[0].clone() if fresh else known[0]  # them (a CUDA-graphed callable does)
    gt_x = energy.known_gradient(x, known[1])
    gt_x = gt_x.clone() if fresh and gt_x is not None else gt_x
    e_x, g_x = energy.mix_energy(x, et_x), energy.mix_gradient(x, gt_x)
    noise = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    y = x - eps * g_x + math.sqrt(2 * eps) * noise
    et_y, gt_y = energy.target_energy(y), energy.known_gradient(y, None)
    e_y, g_y = energy.mix_energy(y, et_y), energy.mix_gradient(y, gt_y)

    def log_q(to: torch.Tensor, frm: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return -(to - frm + eps * g).reshape(x.shape[0], -1).square().sum(1) / (4 * eps)

    log_a = (e_x - e_y) + log_q(x, y, g_y) - log_q(y, x, g_x)
    wide = torch.promote_types(x.dtype, torch.float32)  # bfloat16 draws: too coarse a test
    u = torch.rand(x.shape[0], generator=gen, dtype=wide, device=x.device)
    accept = (torch.log1p(-u) <= log_a) & torch.isfinite(log_a)  # log(1 - u) > -inf: a draw
    # u = 0 made log u = -inf and accepted any proposal
    x_new = torch.where(expand_t_like_x(accept, x), y, x)
    if x_new.dtype != x.dtype:  # a wider gradient promoted the chains: evaluate them there
        return x_new, accept, (energy.target_energy(x_new), None)
    grad = None  # (not evaluated at beta = 0)
    if gt_x is not None and gt_y is not None:
        grad = torch.where(expand_t_like_x(accept, x), gt_y, gt_x)
    return x_new, accept, (torch.where(accept, et_y, et_x), grad)


def annealed_importance_sampling(
    model: Any,
    n_chains: int,
    dim: int | Sequence[int],
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: Any = None,
    model_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> AISResult:
    r"""Forward AIS estimate of $\log Z$ in one call (see `AnnealedImportanceSampling`).

    Args:
        model: Energy $E$.
        n_chains: Number of chains.
        dim: Event shape.
        generator: Randomness.
        dtype: Chain dtype (default: the model's).
        device: Chain device (default: the model's).
        model_kwargs: Conditioning of every model call (see `AnnealedImportanceSampling.estimate`).
        **kwargs: Constructor arguments of `AnnealedImportanceSampling` (``n_intermediate``,
            ``transition``, ``step_size``, ...).

    Returns:
        An `AISResult`.

    Example:
        >>> import torch
        >>> from torchebm.core import DoubleWellModel
        >>> r = annealed_importance_sampling(DoubleWellModel(), 64, 2, n_intermediate=50,
        ...                                  generator=torch.Generator().manual_seed(0))
        >>> r.standard_error < 0.2
        True

    References:
        Neal, R. M. (2001). Annealed importance sampling. Statistics and Computing 11(2).
    """
    ais = AnnealedImportanceSampling(model, **kwargs)
    return ais.estimate(
        n_chains, dim, dtype=dtype, device=device, generator=generator, model_kwargs=model_kwargs
    )
