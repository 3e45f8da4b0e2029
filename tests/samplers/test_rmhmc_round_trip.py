r"""RiemannianManifoldHMC's reversibility check: a trajectory whose implicit solves report
convergence is still rejected when the trajectory from its end point, momentum flipped,
does not come back to the start within $\sqrt{\tau}$ ($\tau$ the solver tolerance; RMS,
relative above 1). The integrator below is the generalised leapfrog with every end point
shifted by $\delta$: its solves converge, its round trip misses by about $2\delta$."""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.core import HarmonicModel
from torchebm.integrators import GeneralisedLeapfrogIntegrator
from torchebm.samplers import RiemannianManifoldHMC

F64 = torch.float64
TOL = 1e-10  # solver tolerance: the round trip must close within sqrt(TOL) = 1e-5


class ShiftedLeapfrog(GeneralisedLeapfrogIntegrator):
    """Generalised leapfrog whose end position is moved by ``delta`` (solves unchanged)."""

    def __init__(self, delta, **kwargs):
        super().__init__(**kwargs)
        self.delta = delta

    def integrate(self, state, *args, **kwargs):
        out = super().integrate(state, *args, **kwargs)
        out["x"] = out.x + self.delta
        return out


@pytest.mark.parametrize(("factor", "rejected"), [(100.0, True), (0.01, False)])
def test_a_converged_trajectory_that_does_not_reverse_is_rejected(factor, rejected):
    delta = factor * math.sqrt(TOL)
    integ = ShiftedLeapfrog(delta, solver_tol=TOL, solver_max_iter=50, dtype=F64)
    metric = lambda x: torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2)  # noqa: E731
    rm = RiemannianManifoldHMC(
        HarmonicModel(), metric, step_size=0.1, n_leapfrog_steps=2, integrator=integ, dtype=F64
    )
    x0 = 0.5 * torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(40))
    n_steps = 3
    gen = torch.Generator().manual_seed(41)
    if rejected:  # the sampler names the cause
        with pytest.warns(RuntimeWarning, match="did not reverse"):
            x = rm.sample(x=x0.clone(), n_steps=n_steps, generator=gen)
    else:
        x = rm.sample(x=x0.clone(), n_steps=n_steps, generator=gen)
    counts = rm.unconverged_proposals
    if rejected:  # every proposal: the chains never move
        assert torch.equal(counts, torch.full((64,), n_steps))
        torch.testing.assert_close(x, x0, rtol=0, atol=0)
    else:  # none fails the check; most move (Metropolis on the shifted map)
        assert int(counts.sum()) == 0
        assert (x != x0).any(1).float().mean() > 0.5
