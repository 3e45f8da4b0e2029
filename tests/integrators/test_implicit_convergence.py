r"""`solver_converged` of the Runge-Kutta integrators: per chain, whether every implicit
stage solve of the last call converged.

On $dx = -\lambda x\,dt$ backward Euler's stage solve is the Picard map
$z \leftarrow b - r z$ with $r = h\lambda$ (from $z_0 = b$), so after $n$ evaluations
the last change of the stage state is exactly $r^n |b|$: with $b = 1$ a chain converged
(change at most ``solver_tol``, the scale being 1) iff $r^n \le$ ``solver_tol``. The
number of evaluations a rate needs is computed from that, not guessed.
"""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from torchebm.integrators import (
    BackwardEulerMaruyamaIntegrator,
    Dopri5Integrator,
    EulerMaruyamaIntegrator,
    HeunIntegrator,
    RK4Integrator,
)

F64 = torch.float64
TOL = 1e-6  # the default solver_tol (above float64's floor of 64 eps)


def needed(rate: float, tol: float = TOL) -> int:
    """Evaluations after which a solve of contraction ``rate`` from ``b = 1`` converged."""
    return math.ceil(math.log(tol) / math.log(rate))


def decay(lam: torch.Tensor):
    """``drift = -lam x``, ``lam`` one value per chain (a column ``(B, 1)``)."""
    return lambda x, t: -lam * x


def ones(b: int) -> torch.Tensor:
    return torch.ones(b, 2, dtype=F64)


@pytest.mark.parametrize(
    "integ", [EulerMaruyamaIntegrator(), HeunIntegrator(), RK4Integrator(), Dopri5Integrator()]
)
def test_explicit_integrators_report_none(integ):
    assert integ.solver_converged is None
    integ.integrate({"x": ones(3)}, 0.1, 4, drift=lambda x, t: -x)
    assert integ.solver_converged is None
    integ.step({"x": ones(3)}, 0.1, drift=lambda x, t: -x)
    assert integ.solver_converged is None


def test_none_before_the_first_call_then_the_rate_decides():
    h = 0.1
    n03 = needed(0.3)  # 0.3^12 = 5.3e-7 <= 1e-6 < 0.3^11 = 1.8e-6
    assert (n03, 0.3**n03 <= TOL, 0.3 ** (n03 - 1) > TOL) == (12, True, True)
    bem = BackwardEulerMaruyamaIntegrator(dtype=F64, solver_max_iter=n03)
    assert bem.solver_converged is None
    lam = torch.full((4, 1), 0.3 / h, dtype=F64)
    out = bem.step({"x": ones(4)}, h, drift=decay(lam))["x"]
    assert bem.solver_converged.tolist() == [True] * 4 and bem.nfe == n03
    assert torch.allclose(out, ones(4) / 1.3, atol=1e-6)
    short = BackwardEulerMaruyamaIntegrator(dtype=F64, solver_max_iter=n03 - 1)
    short.step({"x": ones(4)}, h, drift=decay(lam))
    assert short.solver_converged.tolist() == [False] * 4
    # the default 8 evaluations: too few at h lam = 0.3 (0.3^8 = 6.6e-5), far too few at 0.9
    default = BackwardEulerMaruyamaIntegrator(dtype=F64)
    default.step({"x": ones(4)}, h, drift=decay(lam))
    assert default.solver_converged.tolist() == [False] * 4
    default.step({"x": ones(4)}, h, drift=decay(torch.full((4, 1), 9.0, dtype=F64)))
    assert default.solver_converged.tolist() == [False] * 4


def test_per_chain_with_a_rate_per_row_and_combined_over_the_steps_of_a_call():
    h, rates = 0.1, [0.1, 0.3, 0.9, 0.3]
    lam = torch.tensor(rates, dtype=F64).reshape(-1, 1) / h
    bem = BackwardEulerMaruyamaIntegrator(dtype=F64, solver_max_iter=needed(0.3))
    bem.step({"x": ones(4)}, h, drift=decay(lam))
    assert bem.solver_converged.tolist() == [True, True, False, True]
    # integrate: a row counts as converged only if every step's solve did; row 3 fails
    # only at the last step (its lam jumps there), with noise (the solve is from x + noise)
    jump = lambda x, t: -torch.where(t[:, None] > 0.45, lam, lam.clamp(max=1.0)) * x  # noqa: E731
    bem.integrate({"x": ones(4)}, h, 5, drift=jump, noise_scale=0.1)
    assert bem.solver_converged.tolist() == [True, True, False, True]
    # a NaN row fails; one evaluation is never reported converged
    nan_lam = torch.tensor([[1.0], [math.nan]], dtype=F64)
    bem.step({"x": ones(2)}, h, drift=decay(nan_lam))
    assert bem.solver_converged.tolist() == [True, False]
    one = BackwardEulerMaruyamaIntegrator(dtype=F64, solver_max_iter=1)
    one.step({"x": ones(2)}, h, drift=lambda x, t: torch.zeros_like(x))
    assert one.solver_converged.tolist() == [False, False]
    # an explicit call of the same kind replaces nothing of another object's record
    assert EulerMaruyamaIntegrator().solver_converged is None


def test_early_exit_waits_for_every_chain():
    h = 0.1
    lam = torch.tensor([[1.0], [3.0], [9.0]], dtype=F64)  # rates 0.1, 0.3, 0.9
    bem = BackwardEulerMaruyamaIntegrator(dtype=F64, solver_max_iter=200, solver_check_every=1)
    bem.step({"x": ones(3)}, h, drift=decay(lam))
    # the slowest row decides: 0.9^132 <= 1e-6 < 0.9^131
    assert bem.nfe == needed(0.9) == 132
    assert bem.solver_converged.tolist() == [True, True, True]
    # a row whose iteration diverges (rate 1.5): no early exit, and only it is reported
    bem.step({"x": ones(3)}, h, drift=decay(torch.tensor([[1.0], [3.0], [15.0]], dtype=F64)))
    assert bem.nfe == 200 and bem.solver_converged.tolist() == [True, True, False]


@pytest.mark.parametrize("check_every", [1, 2, 3, 7])
def test_an_early_exit_never_leaves_a_chain_unconverged(check_every):
    g = torch.Generator().manual_seed(check_every)
    exits = []
    for max_iter in (5, 20, 60, 150):
        lam = torch.rand(16, 1, generator=g, dtype=F64) * 8.0  # rates up to 0.8
        bem = BackwardEulerMaruyamaIntegrator(
            dtype=F64, solver_max_iter=max_iter, solver_check_every=check_every
        )
        x = torch.randn(16, 3, generator=g, dtype=F64)
        bem.integrate({"x": x}, 0.1, 3, drift=decay(lam), noise_scale=1.0, generator=g)
        exits.append(bem.nfe < 3 * max_iter)
        if exits[-1]:  # some solve stopped early: every chain of it converged
            assert bool(bem.solver_converged.all())
    assert exits[0] is False and exits[-1] is True  # both branches ran (0.8^150 ~ 3e-15)


def test_shallow_copies_keep_their_own_record_and_old_pickles_read_none():
    bem = BackwardEulerMaruyamaIntegrator(dtype=F64)
    bem.step({"x": ones(2)}, 0.1, drift=lambda x, t: -x)
    copy = bem._with_tolerances(atol=1e-3)
    assert copy.solver_converged is None and bem.solver_converged.tolist() == [True, True]
    # an object pickled by a version without the record: no crash, None until a call
    del bem.__dict__["_solver"]
    old = pickle.loads(pickle.dumps(bem))
    assert old.solver_converged is None
    old.step({"x": ones(2)}, 0.1, drift=lambda x, t: -9.0 * x)
    assert old.solver_converged.tolist() == [False, False]
