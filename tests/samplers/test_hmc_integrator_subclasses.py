"""HMC and RMHMC with a user's subclass of the built-in leapfrogs whose own ``integrate``
returns what torchebm 0.8.9's did: a plain ``{"x", "p"}`` dict, or a result without the end
point's gradient or the solves' convergence. The chains must be the built-in integrator's
(same generator, same arithmetic), and RMHMC must still reject unconverged proposals."""

from __future__ import annotations

import pytest
import torch

from torchebm.core import GaussianModel
from torchebm.integrators import GeneralisedLeapfrogIntegrator, LeapfrogIntegrator, LeapfrogResult
from torchebm.samplers import HamiltonianMonteCarlo, RiemannianManifoldHMC

F64 = torch.float64
MU = torch.tensor([1.0, -2.0], dtype=F64)
COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=F64)


class DictLeapfrog(LeapfrogIntegrator):
    """0.8.9's call and result: the force form (``drift``) in, a plain dict out."""

    def integrate(self, state, step_size=None, n_steps=None, mass=None, *, drift=None, safe=False):
        out = super().integrate(state, step_size, n_steps, mass, drift=drift, safe=safe)
        return {"x": out["x"], "p": out["p"]}


class BareGeneralisedLeapfrog(GeneralisedLeapfrogIntegrator):
    """A result rebuilt from the mapping: its ``converged`` (an attribute only) is lost."""

    def integrate(self, *args, **kwargs):
        return LeapfrogResult(**dict(super().integrate(*args, **kwargs)))


def test_hmc_with_a_089_style_leapfrog_subclass_runs_the_same_chains():
    model = GaussianModel(MU, COV, dtype=F64)
    x0 = torch.randn(500, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    runs = []
    for integrator in (None, DictLeapfrog(dtype=F64)):
        hmc = HamiltonianMonteCarlo(
            model, step_size=0.3, n_leapfrog_steps=5, integrator=integrator, dtype=F64
        )
        runs.append(hmc.sample(x=x0, n_steps=20, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(runs[1], runs[0], rtol=1e-12, atol=1e-12)
    assert not torch.equal(runs[0], x0)  # the chains moved


def test_rmhmc_with_a_result_without_convergence_still_rejects_unconverged_proposals():
    model = GaussianModel(MU, COV, dtype=F64)

    def metric(x):  # position dependent: one fixed-point iteration does not converge
        return torch.diag_embed(1.0 + x.square())

    x0 = torch.randn(400, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    runs, counts = [], []
    for make in (GeneralisedLeapfrogIntegrator, BareGeneralisedLeapfrog):
        rm = RiemannianManifoldHMC(
            model,
            metric,
            step_size=0.3,
            n_leapfrog_steps=4,
            integrator=make(solver_max_iter=1, dtype=F64),
            dtype=F64,
        )
        with pytest.warns(RuntimeWarning, match="did not converge"):
            runs.append(rm.sample(x=x0, n_steps=5, generator=torch.Generator().manual_seed(1)))
        counts.append(rm.unconverged_proposals)
    assert int(counts[0].sum()) > 0
    assert torch.equal(counts[1], counts[0])
    torch.testing.assert_close(runs[1], runs[0], rtol=0, atol=0)
