r"""Deterministic energy descent: plain gradient descent and Nesterov's accelerated gradient.

Both are the sampling loop of Equilibrium Matching (EqM): a learned equilibrium landscape
is descended from noise, optionally with the paper's *adaptive compute* rule that stops a
chain once its gradient norm falls under a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch

from torchebm.core import (
    BaseSampler,
    SamplerContext,
    SamplerState,
    ScheduledParameter,
    expand_t_like_x,
    shared_field,
)
from torchebm.core._module import forward_kwargs
from torchebm.core.errors import check_positive, check_probability
from torchebm.flows._utils import check_model_object
from torchebm.integrators._compat_089 import accept_089_pickle
from torchebm.samplers._compat import SamplerHooks089, explain_energy_call

__all__ = ["GradientDescentSampler", "NesterovSampler", "DescentState"]


@dataclass
class DescentState(SamplerState):
    """Loop state of the descent samplers (per chain unless noted).

    Attributes:
        x: Chains `(B, *event_shape)`.
        v: Nesterov's velocity like `x` (`None` for plain gradient descent).
        active: With `grad_tol`: `(B,)` bool, chains still moving.
        steps_used: With `grad_tol`: `(B,)` long, updates each chain used during the call,
            an update being a step that moved the chain: every step before its stop, and
            for `NesterovSampler` the stopping step too when it moves the chain to its
            look-ahead point (shared: a restart under `nan_policy="resample"` keeps the
            count, as `HMCState.n_unconverged` does).
    """

    v: torch.Tensor | None = None
    active: torch.Tensor | None = None
    steps_used: torch.Tensor | None = shared_field()


def _grad_norm(g: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1)


class _DescentBase(SamplerHooks089, BaseSampler):
    """Shared parts of the descent samplers: ``step_size`` and the adaptive-compute stop rule."""

    __setstate__ = accept_089_pickle("nan_policy")  # samplers pickled whole by torchebm 0.8.9
    explain_type_error = explain_energy_call  # names a model refusing model(x, **model_kwargs)

    def __init__(
        self,
        model: Any,
        step_size: Any = 1e-3,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
        *,
        grad_tol: float | None = None,
        n_steps: int | None = None,
        nan_policy: str = "warn",
    ):
        check_model_object(type(self).__name__, model)
        super().__init__(**forward_kwargs(locals(), super().__init__))
        self.step_size = step_size
        self.grad_tol = None if grad_tol is None else check_positive("grad_tol", grad_tol)

    step_size = ScheduledParameter(positive=True)
    """Current step size $\\eta$ (float or scheduler; assigning either works)."""

    def init_state(self, x: torch.Tensor, ctx: SamplerContext) -> DescentState:
        state = DescentState(x=x)
        if self.grad_tol is not None:  # checked again: it may have been assigned since
            check_positive("grad_tol", self.grad_tol)
            b = x.shape[0]
            state.active = torch.ones(b, dtype=torch.bool, device=x.device)
            state.steps_used = torch.zeros(b, dtype=torch.long, device=x.device)
        return state

    def _update_active(
        self, state: DescentState, g: torch.Tensor, moved: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Freeze chains whose gradient norm is under ``grad_tol``; count this step as an
        update of the chains still active and of those in ``moved`` (`(B,)` bool: chains the
        step moves although it stops them; `None`: none).

        A NaN norm is not under ``grad_tol``: that chain keeps moving, so it turns non-finite
        at this step and ``nan_policy`` reports it (it never passes for a converged chain).
        """
        active = cast(torch.Tensor, state.active)
        active &= ~(_grad_norm(g) < cast(float, self.grad_tol))
        updated = active if moved is None else active | moved
        state.steps_used = cast(torch.Tensor, state.steps_used) + updated
        return active

    def converged(self, state: DescentState) -> torch.Tensor | None:
        if state.active is None:
            return None
        return ~state.active.any()

    def compute_diagnostics(
        self, state: DescentState, ctx: SamplerContext
    ) -> dict[str, torch.Tensor]:
        out = super().compute_diagnostics(state, ctx)
        if state.steps_used is not None:
            out["steps_used"] = state.steps_used.clone()
        return out

    def extra_repr(self) -> str:
        return f"step_size={self.step_size}, grad_tol={self.grad_tol}, {super().extra_repr()}"


class GradientDescentSampler(_DescentBase):
    r"""Gradient descent on the energy: $x_{k+1} = x_k - \eta_k \nabla E(x_k)$.

    Deterministic (no noise; ``generator`` only matters for the initial draw). With
    ``grad_tol`` set, a chain stops (is frozen) at the first step where
    $\|\nabla E(x)\|_2 < \text{grad\_tol}$ (EqM's adaptive compute; a NaN gradient does
    not stop a chain: it diverges and ``nan_policy`` reports it); the number of updates each
    chain used is the diagnostic ``"steps_used"`` (``(n_kept, B)``, a row per kept state: the
    last row is the count after step ``(n_steps // thin) * thin``, the final count when
    ``thin`` divides ``n_steps`` or every chain stopped before; restarts under
    ``nan_policy="resample"`` included) and the loop ends early once
    every chain has stopped (polled every ``convergence_check_every`` steps).

    Args:
        model: Energy model (``gradient()`` is used: closed form for analytic models).
        step_size: $\eta > 0$, float or scheduler.
        dtype: Chain dtype when the model has no parameters.
        device: Chain device when the model has no parameters.
        grad_tol: Optional gradient-norm threshold of the adaptive stop rule (> 0).
        n_steps: Default number of steps of ``sample()`` (class default 100).
        nan_policy: ``"warn"`` (default: divergent chains are reported and recorded in
            ``divergent_chains``), ``"raise"`` or ``"resample"`` (see `BaseSampler`). The
            path is deterministic: a chain restarted from its start repeats it, and with a
            constant step diverges again (a restart helps when a schedule has lowered the
            step); the returned row is wherever that repeat stands at the last step.

    Diagnostics: ``"mean"``, ``"var"``, ``"energy"``; with ``grad_tol`` also ``"steps_used"``
    ``(n_kept, B)`` (updates used by each chain so far).

    Example:
        >>> from torchebm.core import HarmonicModel
        >>> gd = GradientDescentSampler(HarmonicModel(), step_size=0.1)
        >>> gd.sample(x=torch.ones(3, 2), n_steps=200).abs().max() < 1e-6
        tensor(True)

    References:
        Wang, R. & Du, Y. (2025). Equilibrium Matching: Generative Modeling with Implicit
        Energy-Based Models. arXiv:2510.02300.
    """

    def step(self, state: DescentState, ctx: SamplerContext) -> DescentState:
        x = state.x
        eta = self.get_scheduled_value("step_size")
        g = self.gradient_fn(ctx)(x)
        if self.grad_tol is None:
            state.x = torch.add(x, g, alpha=-eta)
        else:
            active = self._update_active(state, g)
            state.x = torch.addcmul(x, g, expand_t_like_x(active, g).to(g.dtype), value=-eta)
        return state


class NesterovSampler(_DescentBase):
    r"""Nesterov accelerated gradient on the energy.

    $$
    v_{k+1} = \mu v_k - \eta_k \nabla E(x_k + \mu v_k), \qquad x_{k+1} = x_k + v_{k+1},
    $$

    with $v_0 = 0$. With ``grad_tol`` the stop rule of
    [`GradientDescentSampler`][torchebm.samplers.GradientDescentSampler] applies to the look-ahead gradient: a chain whose
    look-ahead gradient norm is under ``grad_tol`` moves to that look-ahead point and stays
    there (its velocity is zeroed), so every stopped chain satisfies the stop rule. That
    move is an update, counted in ``"steps_used"`` like the steps before it (not when the
    look-ahead point is the chain itself: zero velocity, e.g. ``momentum=0`` or a stop at
    the first step), so without restarts a chain is at its final point after
    ``steps_used`` steps, as with ``GradientDescentSampler``.

    Args:
        model: Energy model.
        step_size: $\eta > 0$, float or scheduler.
        momentum: $\mu \in [0, 1)$.
        dtype: Chain dtype when the model has no parameters.
        device: Chain device when the model has no parameters.
        grad_tol: Optional gradient-norm threshold of the adaptive stop rule (> 0).
        n_steps: Default number of steps of ``sample()`` (class default 100).
        nan_policy: ``"warn"`` (default), ``"raise"`` or ``"resample"`` (see `BaseSampler`;
            deterministic restarts, as for `GradientDescentSampler`).

    Diagnostics: ``"mean"``, ``"var"``, ``"energy"``; with ``grad_tol`` also ``"steps_used"``
    ``(n_kept, B)`` (updates used by each chain so far).

    Example:
        >>> from torchebm.core import HarmonicModel
        >>> nag = NesterovSampler(HarmonicModel(), step_size=0.1, momentum=0.5)
        >>> nag.sample(x=torch.ones(3, 2), n_steps=100).abs().max() < 1e-6
        tensor(True)

    References:
        Nesterov, Y. (1983). A method for solving the convex programming problem with
        convergence rate O(1/k^2). Soviet Mathematics Doklady 27.
        Wang, R. & Du, Y. (2025). Equilibrium Matching. arXiv:2510.02300.
    """

    def __init__(
        self,
        model: Any,
        step_size: Any = 1e-3,
        momentum: float = 0.9,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
        *,
        grad_tol: float | None = None,
        n_steps: int | None = None,
        nan_policy: str = "warn",
    ):
        super().__init__(**forward_kwargs(locals(), super().__init__))
        self.momentum = check_probability("momentum", momentum, closed_right=False)

    def init_state(self, x: torch.Tensor, ctx: SamplerContext) -> DescentState:
        check_probability("momentum", self.momentum, closed_right=False)  # assigned since?
        state = super().init_state(x, ctx)
        state.v = torch.zeros_like(x)
        return state

    def step(self, state: DescentState, ctx: SamplerContext) -> DescentState:
        x, v = state.x, cast(torch.Tensor, state.v)
        eta, mu = self.get_scheduled_value("step_size"), self.momentum
        look = torch.add(x, v, alpha=mu)
        g = self.gradient_fn(ctx)(look)
        v.mul_(mu).add_(g, alpha=-eta)
        if self.grad_tol is None:
            state.x = x + v
            return state
        # the stopping step moves a chain to its look-ahead point unless it is there already
        # (a stopped chain's velocity is 0, so look == x and it is never counted again)
        moved = (look != x).reshape(x.shape[0], -1).any(dim=1)
        active = expand_t_like_x(self._update_active(state, g, moved), v)
        v.mul_(active)
        # a chain that stops stays at the look-ahead point, where its gradient was measured
        state.x = torch.where(active, x + v, look)
        return state

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}, {super().extra_repr()}"
