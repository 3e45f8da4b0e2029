"""One `RiemannianManifoldHMC` (and its one `GeneralisedLeapfrogIntegrator`) used again
while a `sample()` call runs, here from the model's forward: each call keeps its own
convergence masks, so both calls give, bit for bit, what they give alone."""

from __future__ import annotations

import warnings

import pytest
import torch

from torchebm.core import BaseModel, GaussianModel
from torchebm.samplers import RiemannianManifoldHMC

F64 = torch.float64
MU = torch.tensor([1.0, -2.0], dtype=F64)
COV = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=F64)


def _metric(x: torch.Tensor) -> torch.Tensor:
    d = x - MU
    eye = torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2)
    return eye * (0.5 + d.square().sum(-1))[:, None, None] + 0.3 * torch.einsum("bi,bj->bij", d, d)


class Reentrant(BaseModel):
    """The Gaussian energy; the first time it is differentiated (inside a trajectory) it
    runs ``hook()``, which uses the sampler again."""

    def __init__(self) -> None:
        super().__init__(dtype=F64)
        self.gaussian = GaussianModel(MU, COV, dtype=F64)
        self.hook = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hook, self.hook = (self.hook, None) if x.requires_grad else (None, self.hook)
        if hook is not None:
            hook()
        return self.gaussian(x)


def _sampler(model, step_size):
    return RiemannianManifoldHMC(model, _metric, step_size=step_size, n_leapfrog_steps=3, dtype=F64)


def _start(n, seed):
    return MU + torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(seed))


def _sample(sampler, x, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unconverged proposals reported
        return sampler.sample(x=x, n_steps=3, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("inner_batch", [3, 6])
def test_nested_sample_gives_each_call_its_own_result(inner_batch):
    # step 0.6: many implicit solves do not converge, so the masks decide acceptances
    alone = _sample(_sampler(Reentrant(), 0.6), _start(6, 1), 2)
    inner_alone = _sample(_sampler(Reentrant(), 0.6), _start(inner_batch, 3), 4)
    model = Reentrant()
    sampler = _sampler(model, 0.6)
    inner = []
    model.hook = lambda: inner.append(_sample(sampler, _start(inner_batch, 3), 4))
    outer = _sample(sampler, _start(6, 1), 2)
    assert len(inner) == 1
    assert torch.equal(outer, alone)
    assert torch.equal(inner[0], inner_alone)


def test_nested_unconverged_solve_does_not_reject_the_outer_proposals():
    # the outer chains converge (small steps near the mode); a nested integrator call of
    # the same batch size whose solves all fail must not mark them unconverged
    alone = _sample(_sampler(Reentrant(), 0.05), _start(4, 5), 6)
    model = Reentrant()
    sampler = _sampler(model, 0.05)
    stiff = torch.full((4, 1), 6.0, dtype=F64)  # Picard factor h c / 2 = 3: diverges
    nested = []
    model.hook = lambda: nested.append(
        sampler.integrator.integrate(
            {"x": torch.ones(4, 2, dtype=F64), "p": torch.zeros(4, 2, dtype=F64)},
            1.0,
            2,
            force=lambda x, p, t: -x,
            velocity=lambda x, p, t: stiff * x + p,
        ).converged
    )
    outer = _sample(sampler, _start(4, 5), 6)
    assert len(nested) == 1 and not bool(nested[0].any())
    assert sampler.unconverged_proposals.sum() == 0
    assert torch.equal(outer, alone)
    assert not torch.equal(outer, _start(4, 5))  # proposals were accepted
