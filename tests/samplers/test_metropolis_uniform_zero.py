"""A uniform draw ``u = 0`` (one in 2**24 in float32: about once in 10**7 decisions) made
``log u = -inf`` and accepted any finite proposal in HMC/RMHMC, AIS's MALA moves and
ParallelTemperingCD's swaps (tested in ``tests/losses``): a float32 HMC run on a double
well jumped to |x| = 6.8e4 with H' - H = 1e28 and nothing flagged it (found by the samplers
review). The tests are ``log(1 - u) <= log ratio``, finite for every draw. Here every draw
is made 0, so the old test accepts everything and the right one only what its acceptance
probability allows."""

from __future__ import annotations

import pytest
import torch
from _support.zero_draws import zero_rand, zero_uniform_

from torchebm.core import GaussianModel
from torchebm.samplers import AnnealedImportanceSampling, HamiltonianMonteCarlo


def test_hmc_rejects_every_proposal_of_zero_acceptance_probability(monkeypatch):
    # from the mode of N(0, I) one leapfrog step of size 10 ends at x' = 10 p, p' = -49 p:
    # H' - H = 1249.5 |p|^2 > 0 for every momentum, an acceptance probability of ~0
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    hmc = HamiltonianMonteCarlo(model, step_size=10.0, n_leapfrog_steps=1)
    monkeypatch.setattr(torch.Tensor, "uniform_", zero_uniform_)
    with pytest.warns(RuntimeWarning, match="none of the 500 chains accepted"):
        out, diag = hmc.sample(
            x=torch.zeros(500, 2), n_steps=3, return_diagnostics=True,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
    assert torch.equal(out, torch.zeros(500, 2))  # was: every chain at |x| ~ 10 |p|
    assert float(diag["acceptance_rate"].max()) == 0.0


def test_ais_mala_rejects_moves_of_zero_acceptance_probability(monkeypatch):
    model = GaussianModel(torch.zeros(2), 0.01 * torch.eye(2))  # a narrow target
    ais = AnnealedImportanceSampling(model, n_intermediate=4, transition="mala", step_size=25.0)
    monkeypatch.setattr(torch, "rand", zero_rand)
    with pytest.warns(RuntimeWarning, match="effective sample size"):  # chains that stay
        result = ais.estimate(400, 2, generator=torch.Generator().manual_seed(0))
    # a step of 25 in a target of std 0.1: each proposal lands ~7 (x sqrt 50) away, log a
    # far below 0; the old test accepted all of them (acceptance 1.0)
    assert result.acceptance_rate is not None and result.acceptance_rate < 0.01


def test_hmc_accepts_a_move_of_probability_one_at_every_draw(monkeypatch):
    class Flat(torch.nn.Module):  # H' = H for every trajectory: min(1, e^0) = 1
        def forward(self, x):
            return 0.0 * x.sum(-1)

    hmc = HamiltonianMonteCarlo(Flat(), step_size=0.1, n_leapfrog_steps=2)
    monkeypatch.setattr(torch.Tensor, "uniform_", zero_uniform_)
    _, diag = hmc.sample(
        x=torch.zeros(64, 2), n_steps=3, return_diagnostics=True,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert torch.equal(diag["acceptance_rate"], torch.ones(3))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_metropolis_draws_of_half_precision_chains_are_at_least_float32(monkeypatch, dtype):
    # bfloat16 has 1958 values below 1: log(1 - u) >= -5.5, and no move of probability
    # under e^-5.5 was ever accepted (the commit review measured 0 against e^-6 = 0.0025)
    seen = []
    real_uniform, real_rand = torch.Tensor.uniform_, torch.rand

    def uniform_(self, *args, **kwargs):
        seen.append(self.dtype)
        return real_uniform(self, *args, **kwargs)

    def rand(*args, **kwargs):
        seen.append(kwargs.get("dtype"))
        return real_rand(*args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "uniform_", uniform_)
    monkeypatch.setattr(torch, "rand", rand)
    model = GaussianModel(torch.zeros(2), torch.eye(2), dtype=dtype)
    hmc = HamiltonianMonteCarlo(model, step_size=0.1, n_leapfrog_steps=2, dtype=dtype)
    with pytest.warns(RuntimeWarning, match="lose every update"):  # (half chains stall)
        out = hmc.sample(x=torch.zeros(8, 2, dtype=dtype), n_steps=1)
    assert out.dtype == dtype and seen == [torch.float32]
    seen.clear()
    ais = AnnealedImportanceSampling(model, n_intermediate=2, transition="mala")
    ais.estimate(8, 2, dtype=dtype, generator=torch.Generator().manual_seed(0))
    assert seen == [torch.float32], seen  # one MALA move (the other draws are normal)
