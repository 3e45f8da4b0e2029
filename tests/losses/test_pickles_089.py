"""Losses pickled whole by torchebm 0.8.9 (``torch.save(loss)``) load and compute here.

The pickles are rebuilt by hand in 0.8.9's attribute layout (`_support.pickles_089`: no
``conditioning``/``nan_policy``, the conditioning options as plain attributes, the flow
objectives' time-law options as attributes, the CD buffer bookkeeping of 0.8.9). Each
upgraded loss must equal the loss it was made from and compute the same value.
"""

from __future__ import annotations

import pytest
import torch
from _support.losses import MLPEnergy, Quadratic, TinyLangevin
from _support.pickles_089 import assert_same_state, assert_upgrade_matches, unpickle_089
from torch import nn

from torchebm.losses import (
    ContrastiveDivergence,
    DenoisingScoreMatching,
    EnergyMatchingLoss,
    EquilibriumMatchingLoss,
    FlowMatchingLoss,
    ScoreMatching,
    SlicedScoreMatching,
)

X = torch.linspace(-1.0, 1.0, 16).reshape(8, 2)


class Field(nn.Module):
    """A linear velocity field ``v(x, t)`` (module level: picklable)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x, t, **kwargs):
        return self.lin(torch.cat([x, t.reshape(-1, 1).to(x)], dim=-1))


def _cd(**kw):
    model = MLPEnergy(hidden=8)
    return ContrastiveDivergence(model, TinyLangevin(model, step_size=0.05), k_steps=2, **kw)


CASES = {
    "cd": _cd,
    "cd_persistent": lambda: _cd(persistent=True, buffer_size=16, init_steps=3),
    "score_matching": lambda: ScoreMatching(MLPEnergy(hidden=8)),
    "score_matching_approx": lambda: ScoreMatching(
        MLPEnergy(hidden=8), hessian_method="approx", regularization_strength=0.1
    ),
    "denoising": lambda: DenoisingScoreMatching(Quadratic(), noise_scale=0.2),
    "sliced": lambda: SlicedScoreMatching(MLPEnergy(hidden=8), n_projections=3),
    "flow_matching": lambda: FlowMatchingLoss(
        Field(), interpolant="cosine", t_sampler="lognormal", t_p_mean=-0.5, train_eps=0.01
    ),
    "equilibrium": lambda: EquilibriumMatchingLoss(
        Field(), energy_type="dot", interpolant="vp", ct_threshold=0.7
    ),
    "energy_matching_user_sampler": lambda: EnergyMatchingLoss(
        q := Quadratic(), sampler=TinyLangevin(q), n_langevin_steps=3, coupling="greedy"
    ),
}


def _value(loss):
    torch.manual_seed(0)  # losses that draw from the global RNG
    out = loss(X, generator=torch.Generator().manual_seed(0))
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_089_pickle_becomes_the_loss_it_was_made_from(name):
    assert_upgrade_matches(CASES[name](), _value)


def test_the_model_shared_by_a_089_loss_and_its_sampler_stays_shared():
    loss = _cd()
    upgraded = unpickle_089(loss)
    assert_same_state(upgraded, loss)
    assert upgraded.sampler.model is upgraded.model
    assert next(upgraded.parameters()) is next(upgraded.sampler.model.parameters())


def test_the_replay_buffer_of_a_089_pickle_is_kept():
    loss = _cd(persistent=True, buffer_size=16, init_steps=2)
    _value(loss)  # fills the buffer
    buffer = loss.replay_buffer.clone()
    upgraded = unpickle_089(loss)
    torch.testing.assert_close(upgraded.replay_buffer, buffer, rtol=0, atol=0)
    torch.testing.assert_close(_value(upgraded), _value(loss), rtol=0, atol=0)


def test_the_conditioning_options_of_a_089_pickle_are_kept():
    loss = DenoisingScoreMatching(Quadratic(), cfg_dropout=0.25, null_condition=7)
    upgraded = unpickle_089(loss)
    assert upgraded.conditioning.cfg_dropout == 0.25
    assert upgraded.conditioning.null_condition == 7
