"""Losses that differentiate a model's output twice (explicit-energy EqM, energy matching,
score matching) with a DiT: scaled_dot_product_attention's flash kernel (CPU) has no double
backward, so ``backward()`` failed with "derivative for
aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented" in float32.
The losses run the model through the math kernel where they keep the graph."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.flows import EnergyMatchingLoss, EquilibriumMatchingLoss
from torchebm.losses import DenoisingScoreMatching, ScoreMatching, SlicedScoreMatching
from torchebm.models import DiT, EqMEnergy


def _dit() -> nn.Module:
    torch.manual_seed(0)
    net = DiT(input_size=4, in_channels=1, patch_size=2, embed_dim=16, depth=1, num_heads=2)
    with torch.no_grad():  # off the zero-initialised output (where the l2 energy is flat)
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return net


@pytest.mark.parametrize(
    "make",
    [
        lambda net: EquilibriumMatchingLoss(net, energy_type="dot"),
        lambda net: EquilibriumMatchingLoss(net, energy_type="l2"),
        lambda net: DenoisingScoreMatching(EqMEnergy(net)),
        lambda net: SlicedScoreMatching(EqMEnergy(net)),
        lambda net: ScoreMatching(EqMEnergy(net), hessian_method="hutchinson"),
        lambda net: EnergyMatchingLoss(EqMEnergy(net), n_langevin_steps=1, lambda_cd=0.0),
    ],
    ids=["eqm-dot", "eqm-l2", "dsm", "ssm", "sm-hutchinson", "energy-matching"],
)
def test_second_order_losses_back_propagate_through_attention(make):
    net = _dit()
    loss = make(net)
    x = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    value = loss(x)
    value = value[0] if isinstance(value, tuple) else value
    value.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
