"""`torchebm.samplers.PredictionType` is taken wherever a prediction is named (the flows
piece does not depend on the samplers, so these live with the tests that install both)."""

import torch

from torchebm.flows import EquilibriumMatchingLoss, probability_flow_log_likelihood
from torchebm.samplers import PredictionType


def test_the_likelihood_and_eqm_take_the_samplers_enum_as_flow_sampler_does():
    # probability_flow_log_likelihood and EquilibriumMatchingLoss refused the enum that
    # FlowSampler takes ("prediction must be one of [...], got <PredictionType.NOISE: 1>")
    x = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def score(z, t):  # the score of N(0, I) along the linear path, t = 1 data
        return -z / (t**2 + (1 - t) ** 2)[:, None]

    kw = dict(t_noise=1e-3, t_data=1 - 1e-3, integrator="rk4", n_steps=20)
    by_name = probability_flow_log_likelihood(score, x, prediction="score", **kw)
    by_enum = probability_flow_log_likelihood(score, x, prediction=PredictionType.SCORE, **kw)
    assert torch.equal(by_enum.log_likelihood, by_name.log_likelihood)
    for member in PredictionType:
        loss = EquilibriumMatchingLoss(
            torch.nn.Linear(2, 2), prediction=member, time_invariant=member.name == "VELOCITY"
        )
        assert loss.prediction == member.name.lower()
