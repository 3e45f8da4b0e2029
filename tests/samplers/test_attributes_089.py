"""torchebm 0.8.9's ``FlowSampler.prediction_type`` (now ``prediction``): an alias. Writing
either is checked and parsed as the constructor does (a string written to ``prediction`` was
stored as it was, matched no branch and sampled as a noise prediction, silently)."""

from __future__ import annotations

import pytest
import torch
from _support.pickles_089 import unpickle_089
from torch import nn

from torchebm.core.errors import ConfigurationError
from torchebm.samplers import FlowSampler, PredictionType


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x, t=None):
        return self.lin(x)


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("velocity", PredictionType.VELOCITY),
        ("score", PredictionType.SCORE),
        ("noise", PredictionType.NOISE),
        (PredictionType.SCORE, PredictionType.SCORE),
    ],
)
def test_flow_sampler_prediction_type(prediction, expected):
    sampler = FlowSampler(Field(), prediction=prediction)
    assert sampler.prediction_type is expected is sampler.prediction
    sampler.prediction_type = "velocity"  # 0.8.9's name writes `prediction`
    assert sampler.prediction is PredictionType.VELOCITY


@pytest.mark.parametrize("prediction", ["velocity", "score", "noise"])
def test_a_written_prediction_samples_as_a_constructed_one(prediction):
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    fresh = FlowSampler(Field(), prediction=prediction, integrator="euler", sample_eps=0.05)
    written = FlowSampler(Field(), prediction="noise", integrator="euler", sample_eps=0.05)
    written.load_state_dict(fresh.state_dict())
    written.prediction = prediction
    assert written.prediction is PredictionType[prediction.upper()]
    torch.testing.assert_close(
        written.sample(x=x, n_steps=5), fresh.sample(x=x, n_steps=5), rtol=0, atol=0
    )
    with pytest.raises(ConfigurationError, match="prediction"):
        written.prediction = "velocities"


def test_prediction_type_of_a_sampler_pickled_whole_by_089():
    old = unpickle_089(FlowSampler(Field(), prediction="noise"))  # 0.8.9's prediction_type
    assert old.prediction_type is PredictionType.NOISE is old.prediction
    assert "prediction_type" not in vars(old)
