"""RMHMC's reversibility test judges a move and its reverse alike.

A proposal is kept only if the trajectory from its end point comes back to the start within
a tolerance relative to the size of the states. Scaled by the start alone, a move outward
(small start, large end) failed where the same round-trip error on the move back passed:
rounding then rejected outward moves more often, and in float32 with an ill-conditioned
metric (D = 30, condition number 1e6) the chains contracted (the quadratic form of 2,000
chains started from exact draws 6.5 standard errors low after 6 steps; 2.9 with the
symmetric tolerance, the rest being float32 rounding, which the warning now names)."""

from __future__ import annotations

import math

import torch

from torchebm.core import GaussianModel
from torchebm.integrators._state import tolerance
from torchebm.samplers import RiemannianManifoldHMC

F64 = torch.float64


def _decision(rm, start, end, error):
    """`_reversible` for the move (x, p) -> (x', p') whose reverse trajectory comes back
    to (x + error, -p): the round trip's error is given, the rest is exact."""
    (x, p), (x_prop, p_prop) = start, end
    rm._trajectory = lambda x0, p0, eps, state, cond: (x + error, -p, None)
    converged = torch.ones(x.shape[0], dtype=torch.bool)
    return rm._reversible(x, p, x_prop, p_prop, converged, 0.1, None, {})


def test_a_move_and_its_reverse_get_the_same_tolerance():
    rm = RiemannianManifoldHMC(
        GaussianModel(torch.zeros(2), torch.eye(2), dtype=F64),
        lambda x: torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2),
        dtype=F64,
    )
    tau = math.sqrt(tolerance(float(rm.integrator.solver_tol), F64))
    small = (torch.full((1, 2), 1.0, dtype=F64), torch.full((1, 2), 1.0, dtype=F64))
    large = (torch.full((1, 2), 100.0, dtype=F64), torch.full((1, 2), -1.0, dtype=F64))
    error = torch.full((1, 2), 10 * tau, dtype=F64)  # rms 10 tau: above tau * 1, below tau * 100
    outward = _decision(rm, small, large, error)
    inward = _decision(rm, (large[0], -large[1]), (small[0], -small[1]), error)
    assert bool(outward) == bool(inward) is True
    too_far = torch.full((1, 2), 1000 * tau, dtype=F64)  # beyond tau * 100 both ways
    assert not bool(_decision(rm, small, large, too_far))
    assert not bool(_decision(rm, (large[0], -large[1]), (small[0], -small[1]), too_far))
