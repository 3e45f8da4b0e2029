"""The worked example of docs/contributing.md ("Adding a sampler"): random-walk Metropolis.

It also runs through every row of the contract suite (it is in `samplers_helpers.FACTORIES`);
here it must sample a correlated Gaussian: moments within 5 standard errors of the closed
form, a generic restart under `nan_policy="resample"` with no sampler code for it.
"""

from __future__ import annotations

import math

import pytest
import torch
from _support.examples import load_example

from torchebm.core import GaussianModel

RandomWalkMetropolis = load_example("50_custom_sampler.py").RandomWalkMetropolis
COV = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=torch.float64)


def test_random_walk_metropolis_samples_the_gaussian():
    n = 4000
    sampler = RandomWalkMetropolis(GaussianModel(torch.zeros(2), COV), step_size=1.0)
    g = torch.Generator().manual_seed(0)
    x, diag = sampler.sample(dim=2, n_samples=n, n_steps=300, generator=g, return_diagnostics=True)
    x = x.double()
    var = torch.diagonal(COV)
    assert (x.mean(0).abs() < 5 * (var / n).sqrt()).all()
    assert ((x.var(0) - var).abs() < 5 * (2 * var.square() / n).sqrt()).all()
    cov01 = torch.cov(x.T)[0, 1]  # se of a sample covariance: sqrt((s00 s11 + s01^2) / n)
    assert abs(cov01 - COV[0, 1]) < 5 * ((COV[0, 0] * COV[1, 1] + COV[0, 1] ** 2) / n).sqrt()
    assert 0.3 < float(diag["acceptance_rate"][-50:].mean()) < 0.8


def test_restart_needs_no_sampler_code():
    # a custom sampler whose update turns chains NaN: the cached energies of restarted
    # chains must come back with them (they are per-chain fields of the typed state)
    class Exploding(RandomWalkMetropolis):
        def step(self, state, ctx):
            state = super().step(state, ctx)
            state.x = torch.where(state.x[:, :1] > 1.5, float("nan"), state.x)
            return state

    sampler = Exploding(GaussianModel(torch.zeros(2), COV.float()), step_size=1.0)
    x0 = torch.zeros(64, 2)
    with pytest.warns(RuntimeWarning, match="restarted"):
        out = sampler.sample(
            x=x0, n_steps=20, nan_policy="resample", generator=torch.Generator().manual_seed(0)
        )
    assert torch.isfinite(out).all()
    assert sampler.divergent_chains.any()


def test_acceptance_rate_leaves_restarted_chains_out():
    # a chain that accepts a move into the sink (E = -inf for x_0 > 1) is restarted by
    # nan_policy="resample": it made no decision that stands, so the rate is accepted over
    # the chains not restarted (it was accepted over all chains: about 0.44 for 0.51)
    class Sink(GaussianModel):
        def forward(self, x):
            e = super().forward(x)
            return torch.where(x[:, 0] > 1.0, torch.full_like(e, -math.inf), e)

    f64, b, n = torch.float64, 400, 6
    model = Sink(torch.zeros(2, dtype=f64), torch.eye(2, dtype=f64), dtype=f64)
    x0 = torch.zeros(b, 2, dtype=f64)
    with pytest.warns(RuntimeWarning, match="restarted"):
        _, diag = RandomWalkMetropolis(model, step_size=1.0, dtype=f64).sample(
            x=x0,
            n_steps=n,
            nan_policy="resample",
            generator=torch.Generator().manual_seed(0),
            return_diagnostics=True,
        )
    g, x = torch.Generator().manual_seed(0), x0.clone()  # hand-written float64 loop, same draws
    energy = lambda z: torch.where(z[:, 0] > 1.0, -math.inf, 0.5 * z.square().sum(1))  # noqa: E731
    e, rates, n_restarted = energy(x), [], 0
    for _ in range(n):
        prop = x + torch.empty_like(x).normal_(generator=g)
        e_prop = energy(prop)
        accept = torch.empty_like(e).uniform_(generator=g).neg_().log1p_() <= e - e_prop
        x, e = torch.where(accept[:, None], prop, x), torch.where(accept, e_prop, e)
        restart = e == -math.inf
        rates.append((accept & ~restart).sum().item() / (~restart).sum().item())
        n_restarted += int(restart.sum())
        x, e = torch.where(restart[:, None], x0, x), torch.where(restart, energy(x0), e)
    assert n_restarted > 0.05 * b * n  # the case under test happens
    torch.testing.assert_close(diag["acceptance_rate"], torch.tensor(rates, dtype=f64))


def test_a_chain_starting_at_infinite_energy_stays_and_is_reported():
    # the template held a +inf start energy as it was: the chain accepted its first finite
    # proposal (anything beats +inf), moved away from outside the support and was never
    # reported. It is held at NaN now (as HMC's `_start_energy`): it accepts nothing, stays
    # where it started, and the driver reports it as divergent
    class Walled(GaussianModel):  # E = +inf for x_0 > 20
        def forward(self, x):
            e = super().forward(x)
            return torch.where(x[:, 0] > 20, torch.full_like(e, math.inf), e)

    x0 = torch.zeros(4, 2)
    x0[1, 0] = 21.0
    sampler = RandomWalkMetropolis(Walled(torch.zeros(2), torch.eye(2)), step_size=0.5)
    with pytest.warns(RuntimeWarning, match="1 of 4 chains diverged"):
        out = sampler.sample(x=x0, n_steps=10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[1], x0[1])
    assert sampler.divergent_chains.nonzero().flatten().tolist() == [1]
    assert not torch.equal(out[0], x0[0])  # the finite chains moved
