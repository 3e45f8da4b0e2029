"""A loss's repr shows the hyper-parameters that tell two configurations apart (it showed the
model's name only: a DSM at noise_scale 0.01 and one at 1.0 printed alike)."""

from __future__ import annotations

import torch
from _support.losses import TinyLangevin

from torchebm.core import GaussianModel
from torchebm.losses import (
    ContrastiveDivergence,
    DenoisingScoreMatching,
    ParallelTemperingCD,
    ScoreMatching,
    SlicedScoreMatching,
)


def _model():
    return GaussianModel(torch.zeros(2), torch.eye(2))


def test_score_matching_reprs_name_their_hyper_parameters():
    assert repr(ScoreMatching(_model(), hessian_method="hutchinson")) == (
        "ScoreMatching(model=GaussianModel, hessian_method='hutchinson')"
    )
    assert repr(SlicedScoreMatching(_model(), n_projections=3, projection_type="gaussian")) == (
        "SlicedScoreMatching(model=GaussianModel, n_projections=3, projection_type='gaussian')"
    )
    assert repr(DenoisingScoreMatching(_model(), noise_scale=0.25)) == (
        "DenoisingScoreMatching(model=GaussianModel, noise_scale=0.25)"
    )


def test_parallel_tempering_repr_names_its_temperatures():
    model = _model()
    sampler = TinyLangevin(model)
    text = repr(ParallelTemperingCD(model, sampler, temperatures=(1.0, 2.0, 4.0), swap_every=3))
    assert text.endswith("temperatures=(1.0, 2.0, 4.0), swap_every=3)"), text
    # the plain loss keeps its four fields
    assert repr(ContrastiveDivergence(model, sampler, k_steps=4)).endswith(
        "k_steps=4, persistent=False)"
    )
