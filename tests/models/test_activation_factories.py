"""Activation arguments are factories (``nn.SiLU``, a lambda): an instance such as
``nn.SiLU()`` failed later as a forward called without input, and a non-callable as "'int'
object is not callable"; both are named now."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.models import TimeConditionedMLP
from torchebm.models.components import AdaLNZeroMLPBlock, FeedForward

BUILDERS = {
    "FeedForward": lambda act: FeedForward(8, act_layer=act),
    "AdaLNZeroMLPBlock": lambda act: AdaLNZeroMLPBlock(embed_dim=8, cond_dim=4, act_layer=act),
    "TimeConditionedMLP adaln_zero": lambda act: TimeConditionedMLP(in_dim=2, activation=act),
    "TimeConditionedMLP concat": lambda act: TimeConditionedMLP(
        in_dim=2, conditioning="concat", activation=act
    ),
}


@pytest.mark.parametrize("owner", list(BUILDERS))
@pytest.mark.parametrize("bad", [3, nn.SiLU()], ids=["int", "instance"])
def test_an_activation_that_is_not_a_factory_is_named(owner, bad):
    name = "activation" if owner.startswith("TimeConditioned") else "act_layer"
    with pytest.raises(TypeError, match=f"{name} must be a callable that returns a new nn.Module"):
        BUILDERS[owner](bad)


@pytest.mark.parametrize("owner", list(BUILDERS))
def test_a_factory_builds_its_activation(owner):
    model = BUILDERS[owner](nn.SiLU)
    assert any(isinstance(m, nn.SiLU) for m in model.modules())
    assert not any(isinstance(m, nn.GELU) for m in model.modules())
    assert torch.isfinite(sum(p.sum() for p in model.parameters()))
