"""torchebm 0.8.9's ``FlowSampler.prediction_type`` (now ``prediction``): a read-only alias."""

from __future__ import annotations

import pytest
from _support.pickles_089 import unpickle_089
from torch import nn

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
    with pytest.raises(AttributeError):
        sampler.prediction_type = PredictionType.VELOCITY


def test_prediction_type_of_a_sampler_pickled_whole_by_089():
    old = unpickle_089(FlowSampler(Field(), prediction="noise"))  # 0.8.9's prediction_type
    assert old.prediction_type is PredictionType.NOISE is old.prediction
    assert "prediction_type" not in vars(old)
