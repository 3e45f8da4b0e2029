r"""`BaseSymplecticIntegrator`: the contract of Hamiltonian integrators on states `{"x", "p"}`.

This base moved here from `torchebm.core._base_integrator` (only the flows integrators and
the HMC samplers built on them use it); `from torchebm.core import BaseSymplecticIntegrator`
keeps working through core's lazy export.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from torchebm.core import BaseIntegrator
from torchebm.core.errors import _CHECKED, ConfigurationError, check_int
from torchebm.integrators._compat_089 import accept_089_pickle
from torchebm.integrators._state import _SolverRecord, batched, fits, solver_record

__all__ = ["BaseSymplecticIntegrator"]


def _finite_nonzero(h: torch.Tensor) -> torch.Tensor:
    """0-d bool: every entry of the step ``h`` is finite and non-zero (on the device)."""
    return (h.isfinite() & (h != 0)).all()


class BaseSymplecticIntegrator(BaseIntegrator):
    r"""Base of Hamiltonian (symplectic) integrators on states `{"x", "p"}`.

    Arguments ``device`` and ``dtype`` as in [`BaseIntegrator`][torchebm.core.BaseIntegrator].

    A subclass implements the public `step` and `integrate` of
    [`BaseIntegrator`][torchebm.core.BaseIntegrator] on a state mapping with tensors
    `"x"` and `"p"` of the same shape `(B, *event_shape)`, and declares whether it
    integrates a separable Hamiltonian:

    * `separable = True`: $H = U(x) + \tfrac12 p^\top M^{-1} p$; the caller passes the
      potential's gradient (`gradient(x, t)` $= \nabla U$, or the force
      `drift(x, t)` $= -\nabla U$) and a diagonal `mass`
      ([`LeapfrogIntegrator`][torchebm.integrators.LeapfrogIntegrator]).
    * `separable = False`: a general $H(x, p)$ given by `force(x, p, t)`
      $= -\partial H/\partial x$ and `velocity(x, p, t)` $= \partial H/\partial p$
      ([`GeneralisedLeapfrogIntegrator`][torchebm.integrators.GeneralisedLeapfrogIntegrator]).

    Hamiltonians are autonomous: callbacks receive `t = zeros(B)`. The helpers below
    (state unpacking, the `safe` guards, in-place axpy) are shared by the subclasses.

    `safe=True` clamps forces and positions to $\pm 10^6$ and replaces NaNs by 0 (no
    host sync). HMC runs with `safe=False`: a divergent trajectory is rejected by its
    Metropolis test and reported by the sampler's `nan_policy`, never sanitised into an
    accepted point.

    Example:
        >>> from torchebm.integrators import LeapfrogIntegrator
        >>> issubclass(LeapfrogIntegrator, BaseSymplecticIntegrator)
        True
        >>> LeapfrogIntegrator.separable
        True

    References:
        Leimkuhler, B. & Reich, S. (2004). Simulating Hamiltonian Dynamics. Cambridge
        University Press.
    """

    separable: bool = True
    _SAFE_CLAMP = 1e6
    __setstate__ = accept_089_pickle("_evaluations")  # objects pickled whole by torchebm 0.8.9

    def __init__(self, device: Any = None, dtype: torch.dtype | None = None):
        super().__init__(device=device, dtype=dtype)
        self._solver = _SolverRecord()

    @staticmethod
    def _validate_n_steps(n_steps: Any) -> int:
        return check_int("n_steps", n_steps, minimum=1)

    def _integrate_inputs(self, state: Any, step_size: Any, n_steps: Any) -> tuple:
        """``(n_steps, x, p, t, h)`` of an `integrate` call, checked; ``h`` broadcasts against
        ``x`` (a Python float stays a float). A tensor step holding NaN/inf or 0 (a chain that
        would silently not move) is rejected like a float one (one host read per call; none
        under `checked_inputs`)."""
        n = self._validate_n_steps(n_steps)
        x, p, t = self._unpack_state(state)
        if step_size is None:
            raise ConfigurationError("step_size must be given, got None")
        h = self._prep_step(step_size, x)[0]
        if isinstance(h, torch.Tensor) and not _CHECKED.get() and not bool(_finite_nonzero(h)):
            shown = step_size.detach().flatten()[:8].tolist()
            rule = (  # a zero entry: that chain would silently stay where it is
                "finite"
                if not bool(h.isfinite().all())
                else "non-zero in every entry (a negative one runs the trajectory backwards)"
            )
            raise ConfigurationError(
                f"step_size must be {rule}, got {shown} (a tensor of shape "
                f"{tuple(step_size.shape)}, in the state's dtype {x.dtype})"
            )
        if isinstance(h, float) and h == 0.0:  # returned x unchanged, as no other integrator does
            raise ConfigurationError(
                "step_size must be non-zero (a negative one runs the trajectory backwards), got 0"
            )
        return n, x, p, t, h

    def _unpack_state(self, state: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(x, p, t)` of a state mapping (a dict or a result), `t` the cached zero time."""
        if not (type(state) is dict or isinstance(state, Mapping)) or not (
            "x" in state and "p" in state
        ):
            raise TypeError(
                "state must be a dict with keys 'x' and 'p', got "
                + (f"keys {sorted(state)}" if isinstance(state, Mapping) else type(state).__name__)
            )
        x, p = state["x"], state["p"]
        if not isinstance(x, torch.Tensor) or not isinstance(p, torch.Tensor):
            raise TypeError("state['x'] and state['p'] must be tensors")
        if not x.is_floating_point():  # an integer state failed in add_(alpha=h), unnamed
            raise TypeError(f"state['x'] must have a floating-point dtype, got {x.dtype}")
        if batched(x).dtype != p.dtype:  # p promoted x, and the field was blamed for the new dtype
            raise TypeError(
                f"state['p'] must have the dtype of state['x'] ({x.dtype}), got {p.dtype}"
            )
        if x.shape != p.shape:
            raise ConfigurationError(
                f"state['p'] must have the shape of state['x'] {tuple(x.shape)}, got {tuple(p.shape)}"
            )
        return x, p, self._zeros_t(x)

    @classmethod
    def _guard_force(cls, f: torch.Tensor, safe: bool) -> torch.Tensor:
        """`f` with NaN -> 0 and values clamped to the safe range (a new tensor; `f` kept)."""
        if not safe:
            return f
        big = cls._SAFE_CLAMP
        return f.nan_to_num(nan=0.0, posinf=big, neginf=-big).clamp_(-big, big)

    @classmethod
    def _guard_state(cls, z: torch.Tensor, safe: bool) -> torch.Tensor:
        """`z` with NaN -> 0 and values clamped (in place unless `z` requires grad)."""
        if not safe:
            return z
        big = cls._SAFE_CLAMP
        if z.requires_grad:
            return z.nan_to_num(nan=0.0, posinf=big, neginf=-big).clamp(-big, big)
        return z.nan_to_num_(nan=0.0, posinf=big, neginf=-big).clamp_(-big, big)

    @staticmethod
    def _axpy(y: torch.Tensor, a: Any, x: torch.Tensor) -> torch.Tensor:
        """`y + a * x` for a Python-float or tensor `a` (one allocation)."""
        if isinstance(a, float):
            return torch.add(y, x, alpha=a)
        return torch.addcmul(y, x, a)

    @staticmethod
    def _axpy_(y: torch.Tensor, a: Any, x: torch.Tensor) -> torch.Tensor:
        """`y + a * x` in place on `y` (a tensor the caller owns) when autograd allows it."""
        if y.requires_grad or not fits(x.shape, y.shape):
            return BaseSymplecticIntegrator._axpy(y, a, x)
        if isinstance(a, float):
            return y.add_(x, alpha=a)
        return y.addcmul_(x, a)

    @property
    def solver_converged(self) -> torch.Tensor | None:
        r"""`(B,)` bool: per chain, whether every implicit (fixed-point) solve of the last
        `step`/`integrate` call converged (assigned when that call returns; the call's own
        mask is its result's `converged`, which concurrent or nested calls cannot change);
        `None` when that call solved no implicit equation (the explicit leapfrog) or before
        the first call.

        A solve converged for a chain when its last iteration changed the chain's RMS by at
        most $\tau \max(1, \operatorname{rms}(z))$, $\tau = \max(\texttt{solver\_tol},
        64\,\varepsilon_{\text{dtype}})$ (float32: at least 7.6e-6). A solve of one
        iteration cannot be verified and counts as unconverged. An unconverged chain's end
        point is not the implicit step: it is neither time-reversible nor
        volume-preserving, and a Metropolis test cannot remove the bias that causes, so
        [`RiemannianManifoldHMC`][torchebm.samplers.RiemannianManifoldHMC] rejects it.
        Reading it does not synchronise with the device.

        Example:
            >>> from torchebm.integrators import GeneralisedLeapfrogIntegrator
            >>> gl = GeneralisedLeapfrogIntegrator(solver_max_iter=4)
            >>> _ = gl.integrate({"x": torch.ones(3, 2), "p": torch.zeros(3, 2)}, 0.1, 5,
            ...                  force=lambda x, p, t: -x, velocity=lambda x, p, t: p)
            >>> gl.solver_converged
            tensor([True, True, True])
        """
        record = solver_record(self)  # None: unpickled from a version without one
        return None if record is None else record.converged
