r"""Symplectic integrators: leapfrog (separable H) and generalised leapfrog (non-separable H).

Both return a [`LeapfrogResult`][torchebm.integrators.LeapfrogResult]: the end point
`(x, p)`, plus, for the leapfrog, the potential's gradient there (and its energy when
asked), so that a caller continuing from the end point (HMC) never evaluates them again.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from torchebm.core._module import check_bool
from torchebm.core.errors import (
    _CHECKED,
    ConfigurationError,
    ShapeError,
    check_energies,
    check_int,
    check_non_negative,
)
from torchebm.integrators._base_symplectic import BaseSymplecticIntegrator
from torchebm.integrators._checked import check_mass, check_start, checked_field
from torchebm.integrators._inference import inference_mode_option
from torchebm.integrators._state import fits, fixed_point, warn_unconverged

__all__ = ["LeapfrogIntegrator", "GeneralisedLeapfrogIntegrator", "LeapfrogResult"]

_RESULT_KEYS = ("x", "p", "gradient", "energy")


def _axpy(y: torch.Tensor, a: Any, v: torch.Tensor, in_place: bool) -> torch.Tensor:
    """`y + a v` for a float or tensor `a`: in place on `y` (a tensor the loop owns) or fresh."""
    if isinstance(a, float):
        return y.add_(v, alpha=a) if in_place else torch.add(y, v, alpha=a)
    return y.addcmul_(v, a) if in_place else torch.addcmul(y, v, a)


def _drift(x: torch.Tensor, h: Any, p: torch.Tensor, m: Any, in_place: bool) -> torch.Tensor:
    """`x + h M^{-1} p` for a mass `m` that is `None`, a float or a tensor."""
    if m is None or isinstance(m, float):
        return _axpy(x, h if m is None else h / m, p, in_place)
    if isinstance(h, float):
        return x.addcdiv_(p, m, value=h) if in_place else torch.addcdiv(x, p, m, value=h)
    return x.add_(h * p / m) if in_place else x + h * p / m


@dataclass(eq=False)
class LeapfrogResult(MutableMapping):
    r"""End point of a leapfrog trajectory, with what was evaluated there.

    Attributes:
        x: Position `(B, *event_shape)`.
        p: Momentum, shaped like `x`.
        gradient: $\nabla U(x)$ at the returned position, shaped like `x` (`None` for the
            generalised leapfrog, whose Hamiltonian has no separate potential). Pass it as
            `initial_gradient` of the next trajectory from this point: that trajectory
            then evaluates no gradient at its start.
        energy: $U(x)$ `(B,)` at the returned position when the call got an `energy`
            callback, else `None`.
        converged: `(B,)` bool for the generalised leapfrog: per chain, whether every
            implicit solve of this call converged (see `solver_converged`); `None` for the
            leapfrog. An attribute only, not a key of the mapping.

    It is also a mutable mapping, so code written for the dict states of torchebm 0.8
    keeps working: `result["x"]`, `result["p"]`, `result["gradient"]`,
    `result["energy"]` (the keys whose value is not `None`), and the legacy key
    `result["force"]` $= -\nabla U(x)$ (computed on access). Assigning `result["x"] = ...`
    sets the field; another key (`result["t"] = t`) is kept beside the fields (in
    `extra`), and `update`, `pop`, `popitem`, `setdefault`, `clear`, `copy` (a plain
    `dict`) and `|` work as on a dict, except that `x` and `p` stay (`clear` leaves them). It
    is not a `dict` subclass: `dict(result)` makes one (for `torch.save` read back with
    `weights_only=True`, or a pytree map).

    Example:
        >>> from torchebm.integrators import LeapfrogIntegrator
        >>> out = LeapfrogIntegrator().integrate(
        ...     {"x": torch.ones(4, 2), "p": torch.zeros(4, 2)}, 0.1, 5,
        ...     gradient=lambda x, t: x, energy=lambda x, t: 0.5 * x.square().sum(1))
        >>> sorted(out), out.energy.shape
        (['energy', 'gradient', 'p', 'x'], torch.Size([4]))
        >>> torch.equal(out["force"], -out.gradient)
        True
    """

    x: torch.Tensor
    p: torch.Tensor
    gradient: torch.Tensor | None = None
    energy: torch.Tensor | None = None
    converged: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        extra, self.extra = dict(self.extra or {}), {}  # its own dict (not the caller's)
        for key, value in extra.items():
            if key in _RESULT_KEYS and getattr(self, key) is not None:
                raise ConfigurationError(f"LeapfrogResult got {key!r} twice (and in extra)")
            self[key] = value  # a field's name sets the field

    def __copy__(self) -> LeapfrogResult:
        return replace(self)  # a copy's keys are its own, as a dict's copy

    def __getitem__(self, key: str) -> Any:
        if key in self.extra:
            return self.extra[key]
        if key == "force" and self.gradient is not None:
            return -self.gradient
        value = getattr(self, key, None) if key in _RESULT_KEYS else None
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if key in _RESULT_KEYS:
            setattr(self, key, value)
        elif key == "converged":
            raise KeyError("converged is an attribute, not a key: set result.converged")
        else:
            self.extra[key] = value

    def __delitem__(self, key: str) -> None:
        if key in self.extra:
            del self.extra[key]
        elif key in ("gradient", "energy") and getattr(self, key) is not None:
            setattr(self, key, None)
        elif key in ("x", "p"):
            raise KeyError(f"LeapfrogResult keeps {key!r}: copy it to a dict to drop it")
        else:
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from (k for k in _RESULT_KEYS if getattr(self, k) is not None)
        yield from self.extra

    def __contains__(self, key: object) -> bool:  # the keys listed (not the computed "force")
        return key in self.extra or (key in _RESULT_KEYS and getattr(self, str(key)) is not None)

    def popitem(self) -> tuple[str, Any]:
        """Remove and return the last key but `x` and `p` with its value."""
        for key in reversed(list(self)):
            if key not in ("x", "p"):
                return key, self.pop(key)
        raise KeyError("popitem(): LeapfrogResult keeps 'x' and 'p', nothing else is left")

    def __or__(self, other: Mapping) -> dict[str, Any]:
        return {**self, **other}

    def __ror__(self, other: Mapping) -> dict[str, Any]:
        return {**other, **self}

    def __ior__(self, other: Mapping) -> LeapfrogResult:
        self.update(other)
        return self

    def clear(self) -> None:
        """Drop the gradient, the energy and the other keys (`x` and `p` stay)."""
        self.gradient = self.energy = None
        self.extra.clear()

    def copy(self) -> dict[str, Any]:
        """A plain `dict` of the keys and values (as `dict.copy` of a 0.8 state)."""
        return dict(self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _prep_mass(mass: Any, x: torch.Tensor):
    """``None`` -> unit mass; number -> float; tensor -> masses broadcast against x (floored at
    the dtype's smallest normal number, so that ``1/M`` stays finite: a larger floor, 1e-10,
    made HMC's drift and its kinetic energy use different masses).

    A tensor mass must hold positive finite values (checked once per call, one host read,
    nothing under `checked_inputs`); it may have any shape that broadcasts to ``x.shape`` without enlarging it:
    the event shape ``x.shape[1:]`` or a trailing part of it (``(D,)`` for ``(B, D)``,
    ``(C, 1, 1)`` per channel for images ``(B, C, H, W)``), or ``x.shape`` itself.
    """
    if mass is None:
        return None
    if isinstance(mass, numbers.Real) and not isinstance(mass, bool):
        m = float(mass)
        if not (m > 0 and m < float("inf")):
            raise ConfigurationError(f"mass must be positive and finite, got {mass!r}")
        return max(m, torch.finfo(x.dtype).tiny)
    if isinstance(mass, torch.Tensor):
        check_mass(mass)
        if mass.numel() == 1:
            mass = mass.reshape(())
        if not fits(mass.shape, x.shape):
            raise ShapeError(
                f"mass must be a number or a tensor broadcastable to the shape of x "
                f"{tuple(x.shape)} (e.g. the event shape {tuple(x.shape[1:])}), "
                f"got shape {tuple(mass.shape)}"
            )
        return mass.to(device=x.device, dtype=x.dtype).clamp(min=torch.finfo(x.dtype).tiny)
    raise TypeError(f"mass must be None, a number or a tensor, got {type(mass).__name__}")


def _prep_vector(value: Any, x: torch.Tensor, name: str) -> torch.Tensor | None:
    """Validate ``initial_gradient`` (or ``initial_force``): ``None`` or shaped like ``x``."""
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be None or a tensor, got {type(value).__name__}")
    if value.shape != x.shape:
        raise ShapeError(
            f"{name} must have the shape of x {tuple(x.shape)}, got {tuple(value.shape)}"
        )
    return value


class LeapfrogIntegrator(BaseSymplecticIntegrator):
    r"""Leapfrog (Stoermer-Verlet, kick-drift-kick) for $H = U(x) + \tfrac12 p^\top M^{-1} p$.

    Arguments ``device`` and ``dtype`` as in [`BaseIntegrator`][torchebm.core.BaseIntegrator].

    With $g(x) = \nabla U(x)$:

    $$
    p_{1/2} = p - \tfrac h2 g(x), \quad x' = x + h M^{-1} p_{1/2}, \quad
    p' = p_{1/2} - \tfrac h2 g(x').
    $$

    Second order, symplectic and time-reversible. Consecutive half kicks are merged (one
    momentum update per gradient), so `n_steps` steps cost `n_steps` gradient evaluations
    plus one at the start, which `initial_gradient` saves: the
    [`LeapfrogResult`][torchebm.integrators.LeapfrogResult] carries the gradient at the
    end point (and, with `energy=`, the potential there), so a caller that continues from
    it (HMC after an accepted proposal) never evaluates either twice.

    The vector field is given as `gradient(x, t)` $= \nabla U(x)$. The torchebm 0.8
    form `drift(x, t)` $= -\nabla U(x)$ (the force, with `initial_force`) is accepted
    too and gives the same trajectory bit for bit; the result is the same either way
    (`gradient` $= -$`drift` at the end point, and `result["force"]`).
    Without autograd the positions are updated in place: a `gradient`/`drift` must not keep
    the tensors it is called with beyond the call (clone what it stores).

    `mass` (diagonal $M$): `None` (identity), a number, or a tensor broadcastable
    to the shape of `x` without enlarging it, e.g. per-dimension `(D,)` for `(B, D)`
    or per-channel `(C, 1, 1)` for images `(B, C, H, W)`.

    Example:
        >>> lf = LeapfrogIntegrator()
        >>> grad = lambda x, t: x  # U = |x|^2 / 2
        >>> out = lf.integrate({"x": torch.ones(8, 2), "p": torch.zeros(8, 2)}, 0.1, 20,
        ...                    gradient=grad)
        >>> nxt = lf.integrate(out, 0.1, 20, gradient=grad, initial_gradient=out.gradient)
        >>> lf.nfe  # the gradient at the starting point was not evaluated again
        20

    References:
        Verlet, "Computer experiments on classical fluids", Phys. Rev. 159, 1967.
        Neal, "MCMC using Hamiltonian dynamics", Handbook of MCMC, 2011.
    """

    separable = True

    def step(  # type: ignore[override]
        self,
        state: Mapping,
        step_size: Any = None,
        mass: Any = None,
        *,
        drift: Callable | None = None,
        safe: bool = False,
        initial_force: torch.Tensor | None = None,
        gradient: Callable | None = None,
        initial_gradient: torch.Tensor | None = None,
        energy: Callable | None = None,
    ) -> LeapfrogResult:
        r"""One leapfrog step; the arguments and the result are those of
        [`integrate`][torchebm.integrators.LeapfrogIntegrator.integrate].

        Args:
            state: Start point `{"x", "p"}` (see `integrate`).
            step_size: The step $h$.
            mass: The diagonal mass matrix.
            drift: The force field $-\nabla U$ (0.8 spelling of `gradient`).
            safe: Whether to clamp and zero NaNs.
            initial_force: Force at the start point, if known.
            gradient: The potential's gradient field $\nabla U$.
            initial_gradient: Gradient at the start point, if known.
            energy: The potential $U$, to return its value at the end point.
        """
        return self.integrate(
            state,
            step_size,
            1,
            mass,
            drift=drift,
            safe=safe,
            initial_force=initial_force,
            gradient=gradient,
            initial_gradient=initial_gradient,
            energy=energy,
        )

    @inference_mode_option
    def integrate(  # type: ignore[override]
        self,
        state: Mapping,
        step_size: Any = None,
        n_steps: int | None = None,
        mass: Any = None,
        *,
        drift: Callable | None = None,
        safe: bool = False,
        inference_mode: bool = False,
        initial_force: torch.Tensor | None = None,
        gradient: Callable | None = None,
        initial_gradient: torch.Tensor | None = None,
        energy: Callable | None = None,
    ) -> LeapfrogResult:
        r"""`n_steps` leapfrog steps from `state` (tensors `"x"` and `"p"` of one shape).

        Args:
            state: `{"x": x, "p": p}` (or a previous `LeapfrogResult`); other keys are
                ignored. Never modified.
            step_size: Step $h$ (a number, a 0-d tensor or a `(B,)` tensor).
            n_steps: Number of steps (>= 1).
            mass: Diagonal mass (see the class docstring).
            drift: The torchebm 0.8 form of the field: `drift(x, t)` $= -\nabla U(x)$
                (instead of `gradient`).
            safe: Clamp gradients and states to $\pm 10^6$ and zero NaNs (see
                [`BaseSymplecticIntegrator`][torchebm.integrators.BaseSymplecticIntegrator]).
            inference_mode: Run under `torch.inference_mode()`.
            initial_force: $-\nabla U$ at the starting `x` (the counterpart of
                `initial_gradient` for 0.8 code).
            gradient: `gradient(x, t)` $= \nabla U(x)$, shaped like `x`.
            initial_gradient: $\nabla U$ at the starting `x` if the caller has it (e.g.
                `result.gradient` of the trajectory that ended there): used for the first
                half kick instead of an evaluation. It must be the gradient at
                `state["x"]`; the result is then identical to a call without it.
            energy: `energy(x, t)` $= U(x)$ `(B,)`: evaluated once, at the end point, into
                `LeapfrogResult.energy`.

        Returns:
            The [`LeapfrogResult`][torchebm.integrators.LeapfrogResult]: end point `x`,
            `p`, the gradient there and, with `energy`, the potential there. Inputs are
            never modified; outside autograd the loop updates its own copies in place.

        Raises:
            ValueError: no field, both forms of the field or of its initial value,
                `n_steps < 1`, a bad `mass` (a tensor one too: zero, negative or NaN entries)
                or `step_size` (`None`, 0, NaN or inf; a tensor one in any entry, one host
                read per call, not under `checked_inputs`).
            TypeError: `state` lacks `"x"`/`"p"`, a callback is not callable, `n_steps` is
                not an int.
            ShapeError: an initial value or a mass does not fit `x`, or `gradient`/`drift`
                returned a tensor not shaped like `x` (checked per evaluation, no host read;
                not under `checked_inputs`).
            torchebm.core.errors.NonFiniteError: `state["x"]` or `state["p"]` holds NaN/inf
                (one host read per call; not with `safe=True`, which sanitises them).
        """
        n, x, p, t, h = self._integrate_inputs(state, step_size, n_steps)
        field, kick, v0 = self._field(x, h, gradient, drift, initial_gradient, initial_force)
        if not check_bool("safe", safe):  # the safe mode replaces NaN by 0, by request
            check_start(x=x, p=p)
        if energy is not None:
            energy = self._require_callable("energy", energy, "energy(x, t) = U(x) of shape (B,)")
        x, p, v = self._run(x, p, t, h, kick, n, field, v0, _prep_mass(mass, x), safe)
        end_energy = None if energy is None else check_energies("energy", energy(x, t), len(x))
        return LeapfrogResult(x, p, v if gradient is not None else -v, end_energy)

    def _field(self, x, h, gradient, drift, initial_gradient, initial_force):
        """`(field, kick, v0)`: the callback, the step of a full kick `p += kick * field(x)`
        and the field at the starting `x` (`None`: evaluate it). The gradient form kicks
        with `-h`, the force form with `h`: the same trajectory, without negating values."""
        if gradient is not None and drift is not None:
            raise ConfigurationError(
                "pass either gradient= (grad U) or drift= (the force -grad U), not both"
            )
        if initial_gradient is not None and initial_force is not None:
            raise ConfigurationError("pass either initial_gradient or initial_force, not both")
        g0 = _prep_vector(initial_gradient, x, "initial_gradient")
        f0 = _prep_vector(initial_force, x, "initial_force")
        if gradient is not None:
            field = self._require_callable("gradient", gradient, "gradient(x, t) = grad U(x)")
            return checked_field("gradient", field, x), -h, (g0 if f0 is None else -f0)
        if drift is None:
            raise ConfigurationError(
                "gradient or drift must be provided explicitly as a callable: "
                "gradient(x, t) = grad U(x), or the 0.8 form drift(x, t) = -grad U(x) "
                "(integrators never take a model)"
            )
        field = self._require_callable("drift", drift, "drift(x, t) = -grad U(x)")
        return checked_field("drift", field, x), h, (f0 if g0 is None else -g0)

    def _run(self, x, p, t, h, kick, n, field, v0, m, safe):
        """`n` kick-drift-kick steps with the half kicks of consecutive steps merged (one
        momentum update per evaluation); returns `(x, p, field(x))` at the end point.

        The first updates write fresh tensors (the caller's are never touched); outside
        autograd the later ones update those in place.
        """
        in_place = not torch.is_grad_enabled()
        half = 0.5 * kick
        v = field(x, t) if v0 is None else v0
        if safe:
            v = self._guard_force(v, safe)
        p = _axpy(p, half, v, False)
        for i in range(n):
            x = _drift(x, h, p, m, in_place and i > 0)
            if safe:
                x = self._guard_state(x, safe)
            v = field(x, t)
            if safe:
                v = self._guard_force(v, safe)
            p = _axpy(p, kick if i < n - 1 else half, v, in_place)
            if safe:
                p = self._guard_state(p, safe)
        # `nfe`, assigned at the end (a field that calls this integrator again would change
        # a count written earlier); no nn.Module setattr per call
        self._evaluations.count = n + (v0 is None)
        return x, p, v


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
    once the RMS change is below ``solver_tol``. A chain whose solves did not converge
    (`converged`, `solver_converged`) took truncated iterates, not this step: `integrate`
    then warns once per call (`step` does not). For a separable H it reduces to leapfrog.
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
        state: Mapping,
        step_size: Any = None,
        *,
        force: Callable | None = None,
        velocity: Callable | None = None,
        safe: bool = False,
    ) -> LeapfrogResult:
        r"""One generalised-leapfrog step on `{"x", "p"}`; returns the end point
        `LeapfrogResult(x, p)`.

        Args:
            state: `{"x": x, "p": p}`, each `(B, *event_shape)`.
            step_size: Step $h$.
            force: `force(x, p, t)`, the negative position derivative of $H$.
            velocity: `velocity(x, p, t)`, the momentum derivative of $H$.
            safe: Guard against overflow and NaNs, as in `integrate`.

        Unlike `integrate`, `step` never warns about unconverged solves (the loops that
        step it read the result's `converged` themselves); no host read for them.
        """
        return self._trajectory(state, step_size, 1, force, velocity, safe, report=False)

    @inference_mode_option
    def integrate(  # type: ignore[override]
        self,
        state: Mapping,
        step_size: Any = None,
        n_steps: int | None = None,
        *,
        force: Callable | None = None,
        velocity: Callable | None = None,
        safe: bool = False,
        inference_mode: bool = False,
    ) -> LeapfrogResult:
        r"""`n_steps` generalised-leapfrog steps; returns the end point `LeapfrogResult(x, p)`
        (its `gradient` is `None`: a non-separable H has no separate potential) with this
        call's `converged` mask.

        Args:
            state: `{"x": x, "p": p}` with `x`, `p` of shape `(B, *event_shape)`.
            step_size: Step $h$ (a number, a 0-d tensor or a `(B,)` tensor).
            n_steps: Number of steps (>= 1).
            force: `force(x, p, t)` $= -\partial H/\partial x$ (required).
            velocity: `velocity(x, p, t)` $= \partial H/\partial p$ (required).
            safe: Clamp to $\pm 10^6$ and zero NaNs (see the class docstring).
            inference_mode: Run under `torch.inference_mode()`.

        Raises:
            ValueError: a missing `force`/`velocity`, `n_steps < 1` or a bad `step_size`
                (`None`, 0, NaN or inf; a tensor one in any entry).
            torchebm.core.errors.NonFiniteError: `state["x"]` or `state["p"]` holds NaN/inf
                (one host read per call; not with `safe=True`).

        Warns:
            RuntimeWarning: once per call, when the fixed-point solves did not converge in
                some chains (`converged` False: their end points are truncated iterates, not
                the generalised leapfrog step), naming `solver_max_iter` and `solver_tol` and
                how to raise the one and loosen the other. One host read per call; not under
                `checked_inputs` or in a sampler's loop
                ([`RiemannianManifoldHMC`][torchebm.samplers.RiemannianManifoldHMC] rejects
                those proposals and reports them once per `sample()` itself).
        """
        return self._trajectory(state, step_size, n_steps, force, velocity, safe, report=True)

    def _trajectory(self, state, step_size, n_steps, force, velocity, safe, *, report):
        """The `integrate` loop; `report`: warn about unconverged solves (`integrate` only)."""
        force, velocity = self._callbacks(force, velocity)
        n, x, p, t, h = self._integrate_inputs(state, step_size, n_steps)
        fields = (checked_field("force", force, x), checked_field("velocity", velocity, x))
        if not safe:  # the safe mode replaces NaN by 0, by request
            check_start(x=x, p=p)
        # kept local to the call (a callback may call this integrator again, or another
        # thread may), then stored as the last call's `nfe` and `solver_converged`
        evaluations, converged = 0, None
        for _ in range(n):
            x, p, used, ok = self._implicit_step(x, p, t, h, fields, safe)
            evaluations += used
            converged = ok if converged is None else converged & ok
        self._evaluations.count, self._solver.converged = evaluations, converged
        if report and converged is not None and not _CHECKED.get():
            self._warn_unconverged(converged, x, p)
        return LeapfrogResult(x, p, converged=converged)

    def _warn_unconverged(self, converged: torch.Tensor, x: torch.Tensor, p: torch.Tensor):
        """`warn_unconverged` of this `integrate` call, with the settings that fix it."""
        name = type(self).__name__
        warn_unconverged(
            self,
            converged,
            [x, p],
            "implicit (fixed-point) solves",
            "field",
            ": their end points are truncated iterates, not the generalised leapfrog step "
            f"(neither time-reversible nor volume-preserving). Raise solver_max_iter (now "
            f"{self.solver_max_iter}) or loosen solver_tol (now {self.solver_tol}) when "
            f"constructing it, e.g. {name}(solver_max_iter={4 * self.solver_max_iter}, "
            "solver_check_every=1) (solves stop once converged), or lower the step size (the "
            "iteration converges only while h/2 times the Lipschitz constant of force in p "
            "and of velocity in x is below 1)",
        )

    def _implicit_step(self, x, p, t, h, fields, safe):
        """One step: both implicit equations by Picard iteration, then the explicit kick.
        Returns `(x', p', evaluations, converged)`, `converged` `(B,)` of both solves."""
        force, velocity = fields
        half = 0.5 * h
        n, chk, tol = self.solver_max_iter, self.solver_check_every, self.solver_tol
        guard_f = self._guard_force

        p_half, used_p, ok_p = fixed_point(
            lambda ph: self._axpy(p, half, guard_f(force(x, ph, t), safe)), p, n, chk, tol
        )
        v0 = velocity(x, p_half, t)
        x_new, used_x, ok_x = fixed_point(
            lambda xn: self._axpy(x, half, v0 + velocity(xn, p_half, t)), x, n, chk, tol
        )
        x_new = self._guard_state(x_new, safe)
        p_new = self._axpy(p_half, half, guard_f(force(x_new, p_half, t), safe))
        p_new = self._guard_state(p_new, safe)
        return x_new, p_new, used_p + used_x + 2, ok_p & ok_x
