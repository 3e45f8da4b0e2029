"""The check that a model reads ``y`` (``check_conditioning=True``, the default) passes the
library's own AdaLN-Zero models through their first training steps, and still catches a
zero-initialised model that ignores ``y``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.core.errors import ConfigurationError
from torchebm.flows import EquilibriumMatchingLoss
from torchebm.losses import FlowMatchingLoss
from torchebm.models import DiT, TimeConditionedMLP


def _train(loss_fn, model, x, y, steps=4):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        loss = loss_fn(x, model_kwargs={"y": y})
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss_fn


@pytest.mark.parametrize("loss_cls", [FlowMatchingLoss, EquilibriumMatchingLoss])
@pytest.mark.parametrize("kind", ["mlp", "dit"])
def test_adaln_zero_models_pass_the_conditioning_check_while_training(loss_cls, kind):
    # the output is 0 at init (undecided), and after one step non-zero but the same for
    # every label (the zero modulation layers have not moved yet): the check raised
    # "the model gives the same output for two distinct y values" at the second step
    torch.manual_seed(1)
    if kind == "mlp":
        model = TimeConditionedMLP(in_dim=2, hidden_dim=32, depth=2, num_classes=2)
        x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    else:
        model = DiT(input_size=8, patch_size=4, in_channels=1, embed_dim=32, depth=1,
                    num_heads=2, num_classes=3)  # fmt: skip
        x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
    loss_fn = _train(loss_cls(model), model, x, y)
    assert loss_fn.conditioning.pending is False  # decided: the model reads y


class ZeroHeadIgnoresLabel(nn.Module):
    """An MLP whose last layer starts at zero and whose forward takes ``y`` but ignores it."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 16), nn.SiLU())
        self.head = nn.Linear(16, 2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x, t, y=None):
        return self.head(self.body(torch.cat([x, t.reshape(-1, 1)], dim=1)))


def test_a_zero_initialised_model_that_ignores_y_is_still_caught_after_a_step():
    # its output is 0 at init (undecided); once it moved, neither its output nor any
    # parameter gradient depends on y, so the check raises then
    torch.manual_seed(0)
    model = ZeroHeadIgnoresLabel()
    x, y = torch.randn(32, 2), torch.randint(0, 3, (32,))
    with pytest.raises(ConfigurationError, match="ignores its conditioning"):
        _train(FlowMatchingLoss(model), model, x, y)
