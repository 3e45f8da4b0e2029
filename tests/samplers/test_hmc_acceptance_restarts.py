"""HMC/RMHMC ``"acceptance_rate"`` under ``nan_policy="resample"``: restarted chains count neither way.

A flat model whose energy is chosen by a "label" coordinate $x_1$ that the chains keep
(step 0.05, 10 steps: it drifts by ~0.2 at most, never to a region boundary at $\\pm 5$).
At the start $x_0 = 0$ the energy is 0 for every chain; any other $x_0$ (every proposal
moves it) has energy

* 0 for $x_1 < -5$ ("A"): $H$ is unchanged along the flat trajectory, so the proposal is
  accepted at every step ($\\log u < 0$);
* $+\\infty$ for $|x_1| \\le 5$ ("R"): rejected at every step, the chain stays at its start;
* $-\\infty$ for $x_1 > 5$ ("D"): accepted, so the chain's energy is $-\\infty$ and the
  resample policy restarts it from its start after every step.

So every step has exactly `n_A` accepted and `n_R` rejected Metropolis decisions.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from torchebm.core import BaseModel
from torchebm.samplers import HamiltonianMonteCarlo, RiemannianManifoldHMC

LABEL = {"A": -10.0, "R": 0.0, "D": 10.0}
N_STEPS = 10


class LabelledFlat(BaseModel):
    """$E(x) = 0$ at $x_0 = 0$, else 0 / $+\\infty$ / $-\\infty$ by the region of $x_1$."""

    def __init__(self) -> None:
        super().__init__(dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = x[:, 1]
        inf = torch.full_like(x1, math.inf)
        away = torch.where(x1 < -5, torch.zeros_like(x1), torch.where(x1 > 5, -inf, inf))
        # `0 * sum`: a graph for RMHMC's autograd force, whose gradient is exactly 0
        return (0.0 * x).sum(1) + torch.where(x[:, 0] == 0, torch.zeros_like(x1), away)

    def gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        return torch.zeros_like(x)


def _sampler(name: str):
    model = LabelledFlat()
    if name == "hmc":
        return HamiltonianMonteCarlo(model, 0.05, n_leapfrog_steps=1, dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    metric = lambda x: eye.expand(x.shape[0], 2, 2)  # noqa: E731
    return RiemannianManifoldHMC(model, metric, 0.05, n_leapfrog_steps=1, dtype=torch.float64)


def _run(name: str, kinds: str, **kwargs):
    x0 = torch.tensor([[0.0, LABEL[k]] for k in kinds], dtype=torch.float64)
    sampler = _sampler(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the resample policy's report
        out, diag = sampler.sample(
            x=x0,
            n_steps=N_STEPS,
            return_diagnostics=True,
            generator=torch.Generator().manual_seed(0),
            **kwargs,
        )
    return sampler, x0, out, diag


@pytest.mark.parametrize("name", ["hmc", "rmhmc"])
def test_restarted_chains_are_neither_accepted_nor_rejected(name):
    kinds = "ADRADARD"
    sampler, x0, out, diag = _run(name, kinds, nan_policy="resample")
    # the set-up: exactly the D chains were restarted, R and D chains sit at their start,
    # A chains moved
    assert sampler.divergent_chains.tolist() == [k == "D" for k in kinds]
    for b, k in enumerate(kinds):
        assert torch.equal(out[b], x0[b]) == (k != "A")
    n_accepted, n_rejected = kinds.count("A"), kinds.count("R")
    expected = torch.full((N_STEPS,), n_accepted / (n_accepted + n_rejected), dtype=out.dtype)
    # it was n_accepted / len(kinds) (3/8): the restarted chains counted as rejections
    assert torch.equal(diag["acceptance_rate"], expected)


@pytest.mark.parametrize("name", ["hmc", "rmhmc"])
def test_a_step_where_every_chain_restarted_has_no_acceptance_rate(name):
    sampler, _, _, diag = _run(name, "DDD", nan_policy="resample")
    assert sampler.divergent_chains.all()
    assert torch.isnan(diag["acceptance_rate"]).all()  # 0 decisions (it reported 0.0)


@pytest.mark.parametrize("name", ["hmc", "rmhmc"])
def test_without_restarts_every_chain_is_a_decision(name):
    # A and R only, no restart: the rate is the accepted fraction of all chains
    _, _, _, diag = _run(name, "ARARA", nan_policy="raise")
    assert torch.equal(diag["acceptance_rate"], torch.full((N_STEPS,), 3 / 5, dtype=torch.float64))
