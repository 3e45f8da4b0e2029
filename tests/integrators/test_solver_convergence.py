"""`solver_converged`: the generalised leapfrog's fixed-point solves report, per chain,
whether they converged (an unconverged implicit step is not reversible)."""

from __future__ import annotations

import pytest
import torch

from torchebm.integrators import GeneralisedLeapfrogIntegrator, LeapfrogIntegrator

# these solves fail on purpose (the masks are what is tested): integrate's warning about them
pytestmark = pytest.mark.filterwarnings(
    r"ignore:.*\(fixed-point\) solves did not converge:RuntimeWarning"
)

F64 = torch.float64


def _p_dependent_force(coef: torch.Tensor):
    """force(x, p) = -coef * p: the momentum equation p_half = p - (h/2) coef p_half has
    the Picard map z -> p - (h/2) coef z, contracting iff (h/2) coef < 1 (its rate)."""
    return lambda x, p, t: -coef * p


def test_exactly_the_rows_whose_fixed_point_iteration_diverges_are_flagged():
    # step 0.1: rates (h/2) coef = 0.05, 0.05, 2.0 (diverges), 0.5 (converges slowly, to
    # 0.5^7 ~ 8e-3 of its start after 8 iterations: not to 1e-6), 0.05
    coef = torch.tensor([[1.0], [1.0], [40.0], [10.0], [1.0]], dtype=F64)
    state = {"x": torch.ones(5, 2, dtype=F64), "p": torch.ones(5, 2, dtype=F64)}
    gl = GeneralisedLeapfrogIntegrator(dtype=F64)  # 8 iterations, tol 1e-6
    gl.integrate(state, 0.1, 3, force=_p_dependent_force(coef), velocity=lambda x, p, t: p)
    assert gl.solver_converged.tolist() == [True, True, False, False, True]
    # enough iterations for the slow row: 0.5^40 ~ 1e-12
    gl40 = GeneralisedLeapfrogIntegrator(dtype=F64, solver_max_iter=40)
    gl40.integrate(state, 0.1, 3, force=_p_dependent_force(coef), velocity=lambda x, p, t: p)
    assert gl40.solver_converged.tolist() == [True, True, False, True, True]


def test_the_record_restarts_every_call_and_early_exit_waits_for_every_row():
    ok_coef = torch.ones(4, 1, dtype=F64)
    bad_coef = torch.tensor([[1.0], [1.0], [1.0], [40.0]], dtype=F64)
    state = {"x": torch.ones(4, 2, dtype=F64), "p": torch.ones(4, 2, dtype=F64)}
    gl = GeneralisedLeapfrogIntegrator(dtype=F64, solver_max_iter=20, solver_check_every=1)
    v = lambda x, p, t: p  # noqa: E731
    assert gl.solver_converged is None
    gl.integrate(state, 0.1, 1, force=_p_dependent_force(bad_coef), velocity=v)
    assert gl.solver_converged.tolist() == [True, True, True, False]
    assert gl.nfe == 20 + 2 + 2  # no early exit while a row diverges (x solve: 2 iterations)
    gl.integrate(state, 0.1, 1, force=_p_dependent_force(ok_coef), velocity=v)
    assert gl.solver_converged.tolist() == [True] * 4
    assert gl.nfe < 20 + 2 + 2  # every row converged: the p solve stopped early
    # a NaN row fails (its change is NaN)
    nan_row = lambda x, p, t: torch.cat([-p[:1], torch.full_like(p[1:], torch.nan)])  # noqa: E731
    gl.integrate({"x": state["x"][:2], "p": state["p"][:2]}, 0.1, 1, force=nan_row, velocity=v)
    assert gl.solver_converged.tolist() == [True, False]
    lf = LeapfrogIntegrator()
    lf.integrate({"x": torch.ones(3, 2), "p": torch.zeros(3, 2)}, 0.1, 2, gradient=lambda x, t: x)
    assert lf.solver_converged is None


def test_the_tolerance_is_relative_to_large_states_and_floored_at_the_dtype():
    # rate 0.05, 5 iterations: the last change is ~0.05^5 = 3e-7 of the state. At scale
    # 1e8 that is ~30 in absolute terms, converged relative to the row's RMS (tol 1e-6)
    coef = torch.ones(2, 1, dtype=F64)
    gl = GeneralisedLeapfrogIntegrator(dtype=F64, solver_max_iter=5)
    p = torch.tensor([[1.0, 1.0], [1e8, 1e8]], dtype=F64)
    state = {"x": torch.zeros(2, 2, dtype=F64), "p": p}
    gl.integrate(state, 0.1, 1, force=_p_dependent_force(coef), velocity=lambda x, p, t: p)
    assert gl.solver_converged.tolist() == [True, True]
    gl.integrate(
        {"x": state["x"], "p": p * 1e-8},
        0.1,
        1,
        force=_p_dependent_force(coef),
        velocity=lambda x, p, t: p,
    )
    assert gl.solver_converged.tolist() == [True, True]  # absolute below scale 1
    # float32 with solver_tol=0: the floor 64 eps (7.6e-6) accepts solves converged to
    # rounding, which an exact-zero tolerance would reject
    f32 = GeneralisedLeapfrogIntegrator(solver_tol=0.0, solver_max_iter=30)
    g = torch.Generator().manual_seed(0)
    s32 = {"x": torch.randn(64, 3, generator=g), "p": torch.randn(64, 3, generator=g)}
    f32.integrate(
        s32,
        0.05,
        4,
        force=lambda x, p, t: -x - 0.1 * p.square() * x,
        velocity=lambda x, p, t: p * (1 + 0.1 * x.square()),
    )
    assert bool(f32.solver_converged.all())
