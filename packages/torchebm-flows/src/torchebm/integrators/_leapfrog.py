r"""Symplectic integrators: leapfrog (separable H) and generalised leapfrog (non-separable H)."""

from __future__ import annotations

import numbers
from typing import Any

import torch

from torchebm.core import BaseSymplecticIntegrator
from torchebm.core.errors import ConfigurationError, check_int, check_non_negative

__all__ = ["LeapfrogIntegrator", "GeneralisedLeapfrogIntegrator"]

_MASS_FLOOR = 1e-10


def _prep_mass(mass: Any, x: torch.Tensor):
    """``None`` -> unit mass; number -> float >= 1e-10; tensor -> per-dimension masses."""
    if mass is None:
        return None
    if isinstance(mass, numbers.Real) and not isinstance(mass, bool):
        return max(float(mass), _MASS_FLOOR)
    if isinstance(mass, torch.Tensor):
        if mass.numel() == 1:
            return mass.reshape(()).to(device=x.device, dtype=x.dtype).clamp(min=_MASS_FLOOR)
        if mass.shape[-1] != x.shape[-1] and mass.shape != x.shape:
            raise ValueError(
                f"mass must be a number or a tensor broadcastable over the last dim "
                f"({x.shape[-1]}) of x, got shape {tuple(mass.shape)}"
            )
        return mass.to(device=x.device, dtype=x.dtype).clamp(min=_MASS_FLOOR)
    raise TypeError(f"mass must be None, a number or a tensor, got {type(mass).__name__}")


class LeapfrogIntegrator(BaseSymplecticIntegrator):
    r"""Leapfrog (Stoermer-Verlet, kick-drift-kick) for :math:`H = U(x) + \tfrac12 p^\top M^{-1} p`.

    With :math:`F = \text{drift}(x, 0) = -\nabla U(x)`:

    .. math::
        p_{1/2} = p + \tfrac h2 F(x), \quad x' = x + h M^{-1} p_{1/2}, \quad
        p' = p_{1/2} + \tfrac h2 F(x').

    Second order, symplectic and time-reversible. ``integrate`` reuses the force at the end
    of one step for the next, so ``n_steps`` steps cost ``n_steps + 1`` drift evaluations.
    ``mass``: ``None`` (identity), a number, or a tensor of per-dimension masses broadcast
    over the last dim (all floored at 1e-10).

    Example:
        >>> lf = LeapfrogIntegrator()
        >>> out = lf.integrate({"x": torch.ones(8, 2), "p": torch.zeros(8, 2)}, 0.1, 20,
        ...                    drift=lambda x, t: -x)
        >>> sorted(out)
        ['p', 'x']

    References:
        Verlet, "Computer experiments on classical fluids", Phys. Rev. 159, 1967.
        Neal, "MCMC using Hamiltonian dynamics", Handbook of MCMC, 2011.
    """

    separable = True

    def step(  # type: ignore[override]
        self,
        state: dict,
        step_size: Any = None,
        mass: Any = None,
        *,
        drift=None,
        safe: bool = False,
    ) -> dict:
        """One leapfrog step on ``{"x", "p"}`` (see the class docstring)."""
        drift = self._require_callable("drift", drift, "drift(x, t) = -grad U(x)")
        x = self._unpack_state(state)[0]
        return self._run(state, step_size, 1, (drift, _prep_mass(mass, x)), safe)

    def integrate(  # type: ignore[override]
        self,
        state: dict,
        step_size: Any = None,
        n_steps: int | None = None,
        mass: Any = None,
        *,
        drift=None,
        safe: bool = False,
        inference_mode: bool = False,
    ) -> dict:
        """``n_steps`` leapfrog steps on ``{"x", "p"}``; returns the final ``{"x", "p"}``."""
        if inference_mode:
            with torch.inference_mode():
                return self.integrate(state, step_size, n_steps, mass, drift=drift, safe=safe)
        drift = self._require_callable("drift", drift, "drift(x, t) = -grad U(x)")
        n = self._validate_n_steps(n_steps)
        x = self._unpack_state(state)[0]
        if n > 1 and not safe and not torch.is_grad_enabled():
            return self._run_merged(state, step_size, n, drift, _prep_mass(mass, x))
        return self._run(state, step_size, n, (drift, _prep_mass(mass, x)), safe)

    def _run_merged(self, state: dict, step_size: Any, n: int, drift, m) -> dict:
        """``n`` steps with the two half kicks between consecutive steps merged into one.

        The same kick-drift-kick trajectory (up to rounding) with one momentum update per
        force instead of two, updating fresh copies of ``x`` and ``p`` in place. Used by
        :meth:`integrate` outside autograd (no grad mode, ``safe=False``), e.g. inside HMC.
        """
        x, p, t = self._unpack_state(state)
        if step_size is None:
            raise ConfigurationError("step_size must be given, got None")
        h, _ = self._prep_step(step_size, x)
        half = 0.5 * h
        force = drift(x, t)
        p = self._axpy(p, half, force)  # a fresh tensor: the input p is never mutated
        self.__dict__["nfe"] = n + 1
        if isinstance(h, float) and (m is None or isinstance(m, float)):
            hx = h if m is None else h / m
            x = torch.add(x, p, alpha=hx)  # a fresh tensor: the input x is never mutated
            for i in range(n):
                if i:
                    x.add_(p, alpha=hx)
                p.add_(drift(x, t), alpha=h if i < n - 1 else half)
            return {"x": x, "p": p}
        for i in range(n):
            if i == 0:  # a fresh tensor: the input x is never mutated
                x = self._drift_position(x, h, p, m, in_place=False)
            else:
                self._drift_position(x, h, p, m, in_place=True)
            force = drift(x, t)
            self._axpy_(p, h if i < n - 1 else half, force)
        return {"x": x, "p": p}

    def _drift_position(self, x, h, p, m, *, in_place: bool):
        """``x + h M^{-1} p`` (in place on ``x`` when asked)."""
        if m is None or isinstance(m, float):
            a = h if m is None else h / m
            return self._axpy_(x, a, p) if in_place else self._axpy(x, a, p)
        if isinstance(h, float):
            return x.addcdiv_(p, m, value=h) if in_place else torch.addcdiv(x, p, m, value=h)
        return x.add_(h * p / m) if in_place else x + h * p / m

    def _step_impl(self, x, p, t, h, ctx, cache, safe):
        drift, m = ctx
        if cache is None:
            cache = self._guard_force(drift(x, t), safe)
            self.__dict__["nfe"] += 1
        half = 0.5 * h
        p_half = self._axpy(p, half, cache)
        if m is None:
            x_new = self._axpy(x, h, p_half)
        elif isinstance(m, float):
            x_new = self._axpy(x, h / m, p_half)
        elif isinstance(h, float):
            x_new = torch.addcdiv(x, p_half, m, value=h)
        else:
            x_new = x + h * p_half / m
        x_new = self._guard_state(x_new, safe)
        force = self._guard_force(drift(x_new, t), safe)
        self.__dict__["nfe"] += 1
        p_new = self._guard_state(self._axpy_(p_half, half, force), safe)
        return x_new, p_new, force


class GeneralisedLeapfrogIntegrator(BaseSymplecticIntegrator):
    r"""Generalised leapfrog (implicit Stoermer-Verlet) for a non-separable :math:`H(x, p)`.

    With ``force(x, p, t)`` :math:`= -\partial H/\partial x` and ``velocity(x, p, t)``
    :math:`= \partial H/\partial p`:

    .. math::
        p_{1/2} &= p + \tfrac h2\,\text{force}(x, p_{1/2}) \\
        x' &= x + \tfrac h2\,[\text{velocity}(x, p_{1/2}) + \text{velocity}(x', p_{1/2})] \\
        p' &= p_{1/2} + \tfrac h2\,\text{force}(x', p_{1/2})

    Both implicit equations are solved by Picard iteration (from ``p`` resp. ``x``) with
    ``solver_max_iter`` evaluations, stopping early every ``solver_check_every`` iterations
    once the RMS change is below ``solver_tol``. For a separable H it reduces to leapfrog.
    Symplectic and time-reversible (up to the fixed-point tolerance); this is the integrator
    of Riemannian-manifold HMC.

    Args:
        device: Probe device.
        dtype: Probe dtype.
        solver_max_iter: Picard iterations per implicit equation (>= 1).
        solver_tol: Early-exit tolerance on the RMS change.
        solver_check_every: Check convergence every this many iterations (0 = never).

    Example:
        >>> gl = GeneralisedLeapfrogIntegrator(solver_max_iter=6)
        >>> out = gl.integrate({"x": torch.ones(4, 2), "p": torch.zeros(4, 2)}, 0.1, 10,
        ...                    force=lambda x, p, t: -x, velocity=lambda x, p, t: p)

    References:
        Leimkuhler & Reich, "Simulating Hamiltonian Dynamics", 2004 (generalised leapfrog).
        Girolami & Calderhead, "Riemann manifold Langevin and Hamiltonian Monte Carlo
        methods", JRSS-B 73(2), 2011.
    """

    separable = False

    def __init__(
        self,
        device: Any = None,
        dtype: torch.dtype | None = None,
        *,
        solver_max_iter: int = 8,
        solver_tol: float = 1e-6,
        solver_check_every: int = 0,
    ):
        super().__init__(device=device, dtype=dtype)
        self.solver_max_iter = check_int("solver_max_iter", solver_max_iter, minimum=1)
        self.solver_tol = check_non_negative("solver_tol", solver_tol)
        self.solver_check_every = check_int("solver_check_every", solver_check_every, minimum=0)

    def _callbacks(self, force, velocity):
        force = self._require_callable("force", force, "force(x, p, t) = -dH/dx")
        velocity = self._require_callable("velocity", velocity, "velocity(x, p, t) = dH/dp")
        return force, velocity

    def step(  # type: ignore[override]
        self,
        state: dict,
        step_size: Any = None,
        *,
        force=None,
        velocity=None,
        safe: bool = False,
    ) -> dict:
        """One generalised-leapfrog step on ``{"x", "p"}``."""
        return self._run(state, step_size, 1, self._callbacks(force, velocity), safe)

    def integrate(  # type: ignore[override]
        self,
        state: dict,
        step_size: Any = None,
        n_steps: int | None = None,
        *,
        force=None,
        velocity=None,
        safe: bool = False,
        inference_mode: bool = False,
    ) -> dict:
        """``n_steps`` generalised-leapfrog steps; returns the final ``{"x", "p"}``."""
        if inference_mode:
            with torch.inference_mode():
                return self.integrate(
                    state, step_size, n_steps, force=force, velocity=velocity, safe=safe
                )
        ctx = self._callbacks(force, velocity)
        return self._run(state, step_size, self._validate_n_steps(n_steps), ctx, safe)

    def _step_impl(self, x, p, t, h, ctx, cache, safe):
        force, velocity = ctx
        half = 0.5 * h
        n, chk, tol = self.solver_max_iter, self.solver_check_every, self.solver_tol
        guard_f = self._guard_force

        p_half, used_p = self._picard(
            lambda ph: self._axpy(p, half, guard_f(force(x, ph, t), safe)), p, n, chk, tol
        )
        v0 = velocity(x, p_half, t)
        x_new, used_x = self._picard(
            lambda xn: self._axpy(x, half, v0 + velocity(xn, p_half, t)), x, n, chk, tol
        )
        x_new = self._guard_state(x_new, safe)
        p_new = self._axpy(p_half, half, guard_f(force(x_new, p_half, t), safe))
        p_new = self._guard_state(p_new, safe)
        self.__dict__["nfe"] += used_p + used_x + 2
        return x_new, p_new, None
