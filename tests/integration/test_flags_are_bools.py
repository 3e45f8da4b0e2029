"""Flags are bools: ``bool("False")`` is True, so a flag read through ``bool(...)`` turned an
option on when a config file or command line gave it as the string "False" (TemperatureScheduler
sqrt="False" scheduled like sqrt=True; MLPVelocity(time_conditioned="False") stayed
time-conditioned). Each is refused by name, as the samplers' and datasets' flags already were."""

from __future__ import annotations

import pytest
import torch

from torchebm.core import BaseModel, TemperatureScheduler
from torchebm.losses import BaseTrainer, ScoreMatching
from torchebm.models import ConditionalTransformer2D, MLPEnergy, MLPVelocity


class _Quadratic(BaseModel):
    def forward(self, x):
        return 0.5 * (x**2).sum(1)


def _trainer(**kwargs):
    model = MLPEnergy(2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return BaseTrainer(model, optimizer, ScoreMatching(model), **kwargs)


def _transformer(**kwargs):
    sizes = {"input_size": 8, "patch_size": 4, "embed_dim": 8, "depth": 1, "num_heads": 2}
    return ConditionalTransformer2D(in_channels=1, out_channels=1, **sizes, **kwargs)


CASES = {
    "sqrt": lambda v: TemperatureScheduler(0.04, tau_star=0.0, n_steps=4, sqrt=v),
    "use_mixed_precision": lambda v: _Quadratic().setup_mixed_precision(v),
    "check_conditioning": lambda v: ScoreMatching(_Quadratic(), check_conditioning=v),
    "time_conditioned": lambda v: MLPVelocity(2, time_conditioned=v),
    "use_sincos_pos_embed": lambda v: _transformer(use_sincos_pos_embed=v),
    "time_embedding": lambda v: _transformer(cond_dim=8, time_embedding=v),
    "step_loss_schedulers": lambda v: _trainer(step_loss_schedulers=v),
    "trainer use_mixed_precision": lambda v: _trainer(use_mixed_precision=v),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_string_flag_is_refused_by_name(name):
    CASES[name](False)  # a bool is taken
    with pytest.raises(TypeError, match=f"{name.split()[-1]} must be a bool, got 'False'"):
        CASES[name]("False")
