"""`GeneralisedLeapfrogIntegrator` called again while a call runs (from a callback, as a
model's forward that samples would, or from another thread): each call keeps its own
convergence mask (its result's `converged`) and evaluation count; `solver_converged` and
`nfe` are those of the call that returned last."""

from __future__ import annotations

import pytest
import torch

from torchebm.integrators import GeneralisedLeapfrogIntegrator

# these solves fail on purpose (the masks are what is tested): integrate's warning about them
pytestmark = pytest.mark.filterwarnings(
    r"ignore:.*\(fixed-point\) solves did not converge:RuntimeWarning"
)

F64 = torch.float64
H, N_STEPS, MAX_ITER = 1.0, 3, 8


def _problem(c):
    """velocity = c x + p per row: each Picard iteration for x' multiplies the change by
    h c / 2, so a row with h c / 2 <= 0.05 changes by a factor 0.05^7 < 1e-9 (below the
    tolerance 1e-6) in its last of 8 iterations, and one with h c / 2 >= 1.5 grows: converged
    iff h c / 2 < 1 here. force = -x does not depend on p: that solve converges."""
    c = torch.tensor(c, dtype=F64)
    state = {"x": torch.ones(len(c), 2, dtype=F64), "p": torch.zeros(len(c), 2, dtype=F64)}
    return state, (lambda x, p, t: -x), (lambda x, p, t: c[:, None] * x + p), H * c / 2 < 1


@pytest.mark.parametrize("inner_rows", [[6.0, 0.1, 6.0, 0.1], [0.1, 6.0, 6.0]])
def test_nested_call_keeps_each_calls_mask(inner_rows):
    gl = GeneralisedLeapfrogIntegrator(solver_max_iter=MAX_ITER)
    state, force, velocity, expected = _problem([0.1, 6.0, 0.1, 6.0])
    inner_state, inner_force, inner_velocity, inner_expected = _problem(inner_rows)
    inner = {}

    def outer_velocity(x, p, t):
        if not inner:  # once, in the middle of the outer call's first solve
            inner["out"] = gl.integrate(
                inner_state, H, N_STEPS, force=inner_force, velocity=inner_velocity
            )
            inner["nfe"], inner["last"] = gl.nfe, gl.solver_converged
        return velocity(x, p, t)

    out = gl.integrate(state, H, N_STEPS, force=force, velocity=outer_velocity)
    assert torch.equal(inner["out"].converged, inner_expected)
    assert torch.equal(inner["last"], inner_expected)
    assert torch.equal(out.converged, expected)
    assert torch.equal(gl.solver_converged, expected)  # the last call to return: the outer
    # no early exit (solver_check_every=0): every solve runs MAX_ITER iterations, plus the
    # explicit velocity and force evaluations of each step
    assert inner["nfe"] == gl.nfe == N_STEPS * (2 * MAX_ITER + 2)


def test_single_call_mask_is_the_closed_form():
    gl = GeneralisedLeapfrogIntegrator(solver_max_iter=MAX_ITER)
    state, force, velocity, expected = _problem([0.1, 6.0, 0.05, 3.0])
    out = gl.integrate(state, H, N_STEPS, force=force, velocity=velocity)
    assert torch.equal(out.converged, expected) and torch.equal(gl.solver_converged, expected)
    assert "converged" not in dict(out)  # an attribute, not a key of the 0.8 mapping view
