"""ParallelTemperingCD's swap test (the samplers' Metropolis tests are in
``tests/samplers/test_metropolis_uniform_zero.py``): a uniform draw ``u = 0`` made
``log u = -inf`` and swapped any pair; ``log(1 - u) <= log a`` swaps with probability
``min(1, e^{log a})``. Every draw is made 0 here."""

from __future__ import annotations

import torch
from _support.zero_draws import zero_rand

from torchebm.core import GaussianModel
from torchebm.losses import ParallelTemperingCD


class _Keep:
    """A 'sampler' that leaves the chains where they are: only the swaps move them."""

    def __init__(self, model):
        self.model = model

    def sample(self, x=None, n_steps=1, **kwargs):
        return x.clone()


def test_parallel_tempering_keeps_replicas_whose_swap_has_probability_zero(monkeypatch):
    # replica r of N(0, I) sits at (10 r, 10 r): swapping replicas 0 and 1 has log a =
    # (1 - 1/2) (E_0 - E_1) = -50, a probability of e^-50; the old test swapped every pair
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    sampler = _Keep(model)
    ptcd = ParallelTemperingCD(model, sampler, k_steps=1, temperatures=(1.0, 2.0, 4.0), n_chains=8)
    ptcd.tempered_chains = torch.stack([torch.full((8, 2), 10.0 * r) for r in range(3)])
    monkeypatch.setattr(torch, "rand", zero_rand)
    ptcd.negative_phase(torch.randn(8, 2), generator=torch.Generator().manual_seed(0))
    assert torch.equal(ptcd.swap_acceptance[:1], torch.zeros(1))  # the pair tried (even)
    assert float(ptcd.tempered_chains[0].abs().max()) == 0.0  # replica 0 stayed at 0


def test_a_move_of_acceptance_probability_one_is_accepted_at_every_draw(monkeypatch):
    # a flat energy: neighbouring replicas swap with probability min(1, e^0) = 1, also for
    # the draw u = 0 (a strict log(1 - u) < 0 refused it)
    class Flat(torch.nn.Module):
        def forward(self, x):
            return 0.0 * x.sum(-1)

    model = Flat()
    ptcd = ParallelTemperingCD(model, _Keep(model), k_steps=1, temperatures=(1.0, 2.0))
    monkeypatch.setattr(torch, "rand", zero_rand)
    ptcd.negative_phase(torch.randn(64, 2), generator=torch.Generator().manual_seed(0))
    assert torch.equal(ptcd.swap_acceptance, torch.ones(1))
