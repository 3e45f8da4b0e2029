r"""Symplectic integrators: leapfrog (separable H) and generalised leapfrog (non-separable H)."""

from __future__ import annotations

import numbers
from typing import Any

import torch

from torchebm.core import BaseSymplecticIntegrator
from torchebm.core.errors import ConfigurationError, ShapeError, check_int, check_non_negative

__all__ = ["LeapfrogIntegrator", "GeneralisedLeapfrogIntegrator"]

_MASS_FLOOR = 1e-10


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Whether ``shape`` broadcasts against ``target`` without enlarging it (plain Python)."""
    if len(shape) > len(target):
        return False
    return all(a == b or a == 1 for a, b in zip(reversed(shape), reversed(target)))


def _prep_mass(mass: Any, x: torch.Tensor):
    """``None`` -> unit mass; number -> float >= 1e-10; tensor -> masses broadcast against x.

    A tensor mass may have any shape that broadcasts to ``x.shape`` without enlarging it:
    the event shape ``x.shape[1:]`` or a trailing part of it (``(D,)`` for ``(B, D)``,
    ``(C, 1, 1)`` per channel for images ``(B, C, H, W)``), or ``x.shape`` itself.
    """
    if mass is None:
        return None
    if isinstance(mass, numbers.Real) and not isinstance(mass, bool):
        m = float(mass)
        if not (m > 0 and m < float("inf")):
            raise ConfigurationError(f"mass must be positive and finite, got {mass!r}")
        return max(m, _MASS_FLOOR)
    if isinstance(mass, torch.Tensor):
        if mass.numel() == 1:
            return mass.reshape(()).to(device=x.device, dtype=x.dtype).clamp(min=_MASS_FLOOR)
        if not _broadcasts_to(mass.shape, x.shape):
            raise ShapeError(
                f"mass must be a number or a tensor broadcastable to the shape of x "
                f"{tuple(x.shape)} (e.g. the event shape {tuple(x.shape[1:])}), "
                f"got shape {tuple(mass.shape)}"
            )
        return mass.to(device=x.device, dtype=x.dtype).clamp(min=_MASS_FLOOR)
    raise TypeError(f"mass must be None, a number or a tensor, got {type(mass).__name__}")


def _prep_force(
    initial_force: Any, x: torch.Tensor, name: str = "initial_force"
) -> torch.Tensor | None:
    """Validate ``initial_force`` (or ``initial_gradient``): ``None`` or shaped like ``x``."""
    if initial_force is None:
        return None
    if not isinstance(initial_force, torch.Tensor):
        raise TypeError(f"{name} must be None or a tensor, got {type(initial_force).__name__}")
    if initial_force.shape != x.shape:
        raise ShapeError(
            f"{name} must have the shape of x {tuple(x.shape)}, got {tuple(initial_force.shape)}"
        )
    return initial_force


class _Kick:
    """Per-call context of the leapfrog step: the drift, the mass and the carried force.

    ``force`` enters as the caller's ``initial_force`` (or ``None``) and leaves as the force
    at the final position, which [`LeapfrogIntegrator.integrate`][torchebm.integrators.LeapfrogIntegrator.integrate] returns.
    """

    __slots__ = ("drift", "mass", "force", "sign")

    def __init__(self, drift, mass, force: torch.Tensor | None, sign: float = 1.0):
        self.drift = drift
        self.mass = mass
        self.force = force
        self.sign = sign  # -1: ``drift`` returns the potential's gradient (minus the force)


class LeapfrogIntegrator(BaseSymplecticIntegrator):
    r"""Leapfrog (Stoermer-Verlet, kick-drift-kick) for $H = U(x) + \tfrac12 p^\top M^{-1} p$.

    With $F = \text{drift}(x, 0) = -\nabla U(x)$:

    $$
    p_{1/2} = p + \tfrac h2 F(x), \quad x' = x + h M^{-1} p_{1/2}, \quad
    p' = p_{1/2} + \tfrac h2 F(x').
    $$

    Second order, symplectic and time-reversible. ``integrate`` reuses the force at the end
    of one step for the next, so ``n_steps`` steps cost ``n_steps + 1`` drift evaluations,
    or ``n_steps`` when the force at the starting point is passed as ``initial_force``.
    The returned state carries the force at the final position as ``"force"``, so a caller
    that continues from there (HMC after an accepted proposal) passes it back instead of
    evaluating it again.

    ``mass`` (diagonal $M$): ``None`` (identity), a number, or a tensor broadcastable
    to the shape of ``x`` without enlarging it, e.g. per-dimension ``(D,)`` for ``(B, D)``
    or per-channel ``(C, 1, 1)`` for images ``(B, C, H, W)`` (all floored at 1e-10).

    Example:
        >>> lf = LeapfrogIntegrator()
        >>> drift = lambda x, t: -x
        >>> out = lf.integrate({"x": torch.ones(8, 2), "p": torch.zeros(8, 2)}, 0.1, 20,
        ...                    drift=drift)
        >>> sorted(out)
        ['force', 'p', 'x']
        >>> nxt = lf.integrate(out, 0.1, 20, drift=drift, initial_force=out["force"])
        >>> lf.nfe  # the force at the starting point was not evaluated again
        20

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
        initial_force: torch.Tensor | None = None,
    ) -> dict:
        """One leapfrog step on ``{"x", "p"}``; returns ``{"x", "p", "force"}`` as
        [`integrate`][torchebm.integrators.LeapfrogIntegrator.integrate] does (``initial_force``: see there)."""
        return self.integrate(
            state, step_size, 1, mass, drift=drift, safe=safe, initial_force=initial_force
        )

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
        initial_force: torch.Tensor | None = None,
        gradient=None,
        initial_gradient: torch.Tensor | None = None,
    ) -> dict:
        r"""``n_steps`` leapfrog steps on ``{"x", "p"}`` (tensors of the same shape).

        Args:
            state: ``{"x": x, "p": p}``; other keys (e.g. a previous ``"force"``) are ignored.
            step_size: Step $h$ (a number or a tensor broadcastable against ``x``).
            n_steps: Number of steps (>= 1).
            mass: Diagonal mass (see the class docstring).
            drift: ``drift(x, t)`` $= -\nabla U(x)$, shaped like ``x``.
            safe: Clamp forces and positions and zero NaNs (see
                [`BaseSymplecticIntegrator`][torchebm.core.BaseSymplecticIntegrator]).
            inference_mode: Run under ``torch.inference_mode()``.
            initial_force: ``drift(x, 0)`` at the starting ``x`` if the caller already has
                it (shaped like ``x``): used for the first half kick instead of evaluating
                the drift, which saves one evaluation. It must be the force at
                ``state["x"]``; the result is then identical to a call without it.
            gradient: ``gradient(x, t)`` $= \nabla U(x)$, instead of ``drift`` (one
                of the two): the kicks subtract it, which saves negating every evaluation
                (HMC passes the energy gradient this way).
            initial_gradient: With ``gradient``: $\nabla U$ at the starting ``x``
                (the counterpart of ``initial_force``).

        Returns:
            ``{"x", "p", "force"}``: the final position and momentum, and the force
            ``drift(x, 0)`` at the final position (reusable as the next ``initial_force``);
            with ``gradient``: ``{"x", "p", "gradient"}`` (the gradient at the final
            position, reusable as the next ``initial_gradient``).
        """
        if inference_mode:
            with torch.inference_mode():
                return self.integrate(
                    state,
                    step_size,
                    n_steps,
                    mass,
                    drift=drift,
                    safe=safe,
                    initial_force=initial_force,
                    gradient=gradient,
                    initial_gradient=initial_gradient,
                )
        if gradient is not None:
            if drift is not None or initial_force is not None:
                raise ConfigurationError(
                    "pass either drift (and initial_force) or gradient (and initial_gradient), "
                    "not both"
                )
            grad_fn = self._require_callable("gradient", gradient, "gradient(x, t) = grad U(x)")
            n = self._validate_n_steps(n_steps)
            x = self._unpack_state(state)[0]
            g0 = _prep_force(initial_gradient, x, "initial_gradient")
            kick = _Kick(grad_fn, _prep_mass(mass, x), g0, sign=-1.0)
            if n > 1 and not safe and not torch.is_grad_enabled():
                out = self._run_merged(state, step_size, n, kick)
                out["gradient"] = out.pop("force")
                return out
            # the general path works on forces: negate once per evaluation
            kick = _Kick(lambda z, t: -grad_fn(z, t), kick.mass, None if g0 is None else -g0)
            out = self._run(state, step_size, n, kick, safe)
            out["gradient"] = -kick.force if kick.force is not None else None
            return out
        if initial_gradient is not None:
            raise ConfigurationError("initial_gradient needs gradient=")
        drift = self._require_callable("drift", drift, "drift(x, t) = -grad U(x)")
        n = self._validate_n_steps(n_steps)
        x = self._unpack_state(state)[0]
        kick = _Kick(drift, _prep_mass(mass, x), _prep_force(initial_force, x))
        if n > 1 and not safe and not torch.is_grad_enabled():
            return self._run_merged(state, step_size, n, kick)
        out = self._run(state, step_size, n, kick, safe)
        out["force"] = kick.force
        return out

    def _run_merged(self, state: dict, step_size: Any, n: int, kick: _Kick) -> dict:
        """``n`` steps with the two half kicks between consecutive steps merged into one.

        The same kick-drift-kick trajectory (up to rounding) with one momentum update per
        force instead of two, updating fresh copies of ``x`` and ``p`` in place. Used by
        [`integrate`][torchebm.integrators.LeapfrogIntegrator.integrate] outside autograd (no grad mode, ``safe=False``), e.g. inside HMC.
        """
        x, p, t = self._unpack_state(state)
        if step_size is None:
            raise ConfigurationError("step_size must be given, got None")
        h, _ = self._prep_step(step_size, x)
        # ``force`` is the drift's output: the force, or the gradient when sign = -1
        sign = kick.sign
        hk = h if sign == 1.0 else -h  # kick step: p += hk * drift(x)
        half = 0.5 * hk
        drift, m = kick.drift, kick.mass
        force = drift(x, t) if kick.force is None else kick.force
        p = self._axpy(p, half, force)  # a fresh tensor: the input p is never mutated
        self.nfe = n + (kick.force is None)
        if isinstance(h, float) and (m is None or isinstance(m, float)):
            hx = h if m is None else h / m
            x = torch.add(x, p, alpha=hx)  # a fresh tensor: the input x is never mutated
            for i in range(n):
                if i:
                    x.add_(p, alpha=hx)
                force = drift(x, t)
                p.add_(force, alpha=hk if i < n - 1 else half)
            return {"x": x, "p": p, "force": force}
        for i in range(n):
            if i == 0:  # a fresh tensor: the input x is never mutated
                x = self._drift_position(x, h, p, m, in_place=False)
            else:
                self._drift_position(x, h, p, m, in_place=True)
            force = drift(x, t)
            self._axpy_(p, hk if i < n - 1 else half, force)
        return {"x": x, "p": p, "force": force}

    def _drift_position(self, x, h, p, m, *, in_place: bool):
        """``x + h M^{-1} p`` (in place on ``x`` when asked)."""
        if m is None or isinstance(m, float):
            a = h if m is None else h / m
            return self._axpy_(x, a, p) if in_place else self._axpy(x, a, p)
        if isinstance(h, float):
            return x.addcdiv_(p, m, value=h) if in_place else torch.addcdiv(x, p, m, value=h)
        return x.add_(h * p / m) if in_place else x + h * p / m

    def _step_impl(self, x, p, t, h, ctx, cache, safe):
        drift, m = ctx.drift, ctx.mass
        if cache is None:  # first step: the caller's force at x, else one evaluation
            if ctx.force is None:
                cache = self._guard_force(drift(x, t), safe)
                self.nfe += 1
            else:
                cache = self._guard_force(ctx.force, safe)
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
        self.nfe += 1
        p_new = self._guard_state(self._axpy_(p_half, half, force), safe)
        ctx.force = force
        return x_new, p_new, force


class GeneralisedLeapfrogIntegrator(BaseSymplecticIntegrator):
    r"""Generalised leapfrog (implicit Stoermer-Verlet) for a non-separable $H(x, p)$.

    With ``force(x, p, t)`` $= -\partial H/\partial x$ and ``velocity(x, p, t)``
    $= \partial H/\partial p$:

    $$
    \begin{aligned}
    p_{1/2} &= p + \tfrac h2\,\text{force}(x, p_{1/2}) \\
    x' &= x + \tfrac h2\,[\text{velocity}(x, p_{1/2}) + \text{velocity}(x', p_{1/2})] \\
    p' &= p_{1/2} + \tfrac h2\,\text{force}(x', p_{1/2})
    \end{aligned}
    $$

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
        self.nfe += used_p + used_x + 2
        return x_new, p_new, None
