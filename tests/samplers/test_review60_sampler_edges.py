"""Edges of the shared sampler contract found by a review.

* HMC and RMHMC accepted any finite proposal from a chain whose *starting* energy is
  ``+inf`` (outside the support): the chain moved away and was never reported, under every
  ``nan_policy``, although the class docs call such a chain divergent. It now stays at its
  start and is reported like a NaN start.
* ``FlowSampler`` under ``nan_policy="resample"`` restarted a row from its start noise but
  integrated it over the rest of the shared time grid only: a finite, wrong sample. Refused.
* Hyper-parameters assigned after construction (``momentum``, ``grad_tol``,
  ``n_leapfrog_steps``) skipped the constructor's checks: ``momentum = 1.5`` ran and diverged
  in silence, ``n_leapfrog_steps = 0`` named ``n_steps``. They are checked when sampling starts.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.core import BaseModel
from torchebm.core.errors import ConfigurationError, NonFiniteError
from torchebm.samplers import (
    FlowSampler,
    GradientDescentSampler,
    HamiltonianMonteCarlo,
    NesterovSampler,
    RiemannianManifoldHMC,
)


class Walled(BaseModel):
    """``|x|^2 / 2``, and ``+inf`` where ``x_0 > 20`` (outside the support)."""

    def forward(self, x):
        e = 0.5 * x.square().sum(-1)
        return torch.where(x[:, 0] > 20, torch.full_like(e, math.inf), e)


def _hmc():
    return HamiltonianMonteCarlo(Walled(), step_size=0.3, n_leapfrog_steps=3, dtype=torch.float64)


def _rmhmc():
    def metric(x):
        return torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2)

    return RiemannianManifoldHMC(
        Walled(), metric, step_size=0.3, n_leapfrog_steps=3, dtype=torch.float64
    )


def _starts() -> torch.Tensor:
    x = torch.zeros(4, 2, dtype=torch.float64)
    x[1, 0] = 21.0  # E = +inf at chain 1's start
    return x


@pytest.mark.parametrize("factory", [_hmc, _rmhmc], ids=["hmc", "rmhmc"])
def test_a_chain_starting_outside_the_support_is_reported_and_stays(factory):
    sampler = factory()
    x0 = _starts()
    with pytest.warns(RuntimeWarning, match=r"1 of 4 chains diverged .*: 1 \(at the start\)"):
        out = sampler.sample(x=x0, n_steps=10, generator=torch.Generator().manual_seed(0))
    assert sampler.divergent_chains.nonzero().flatten().tolist() == [1]
    assert torch.equal(out[1], x0[1])  # no proposal accepted from a NaN/inf current energy
    others = [0, 2, 3]
    assert bool((out[others] != 0).any(-1).all())  # the healthy chains moved
    with pytest.raises(NonFiniteError) as info:
        factory().sample(
            x=x0, n_steps=10, nan_policy="raise", generator=torch.Generator().manual_seed(0)
        )
    assert info.value.indices == [1]


class Field(torch.nn.Module):
    def forward(self, x, t):
        return -x


def test_flow_sampler_refuses_resample_in_every_way_it_can_be_asked():
    with pytest.raises(ConfigurationError, match="nan_policy='resample' does not apply"):
        FlowSampler(Field(), integrator="euler", nan_policy="resample")
    sampler = FlowSampler(Field(), integrator="euler")
    with pytest.raises(ConfigurationError, match="time grid"):
        sampler.sample(x=torch.ones(3, 2), n_steps=4, nan_policy="resample")
    sampler.nan_policy = "resample"
    with pytest.raises(ConfigurationError, match="time grid"):
        sampler.sample(x=torch.ones(3, 2), n_steps=4)
    sampler.nan_policy = "warn"  # the other policies run
    out = sampler.sample(x=torch.ones(3, 2), n_steps=4)
    torch.testing.assert_close(out, torch.full((3, 2), 0.75**4))  # Euler on dx/dt = -x


@pytest.mark.parametrize(
    "make, name, value, match",
    [
        (lambda m: NesterovSampler(m, step_size=0.1), "momentum", 1.5, r"momentum .*1\.5"),
        (lambda m: GradientDescentSampler(m, grad_tol=1e-3), "grad_tol", -1.0, "grad_tol"),
        (lambda m: HamiltonianMonteCarlo(m), "n_leapfrog_steps", 0, "n_leapfrog_steps"),
        (lambda m: HamiltonianMonteCarlo(m), "n_leapfrog_steps", 2.5, "n_leapfrog_steps"),
        (
            lambda m: RiemannianManifoldHMC(m, lambda x: torch.eye(2).expand(len(x), 2, 2)),
            "n_leapfrog_steps",
            0,
            "n_leapfrog_steps",
        ),
    ],
)
def test_hyper_parameters_assigned_after_construction_are_checked_when_sampling(
    make, name, value, match
):
    sampler = make(Walled())
    setattr(sampler, name, value)
    with pytest.raises((ConfigurationError, TypeError, ValueError), match=match):
        sampler.sample(x=torch.zeros(2, 2), n_steps=3)
