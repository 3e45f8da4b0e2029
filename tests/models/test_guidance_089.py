"""`ClassifierFreeGuidance` is a `BaseModel`, as in torchebm 0.8.9: around a conditional
energy its ``gradient`` is the guided energy's gradient (samplers call it)."""

from __future__ import annotations

import torch
from torch import nn

from torchebm.core import BaseModel
from torchebm.models import ClassifierFreeGuidance


class CondEnergy(nn.Module):
    """``E(x | y) = (1 + y) |x|^2``."""

    def forward(self, x, t=None, y=None):
        return (x**2).sum(-1) * (1 + y.float())


def test_guidance_around_an_energy_is_a_base_model_with_its_gradient():
    cfg = ClassifierFreeGuidance(CondEnergy(), guidance_scale=2.0, null_condition=3)
    assert isinstance(cfg, BaseModel)
    x = torch.linspace(-1, 1, 8).reshape(4, 2)
    y = torch.tensor([0, 1, 2, 0])
    # E_w = E(x|null) + w (E(x|y) - E(x|null)) = (4 + 2 (y - 3)) |x|^2: grad = 4 (y - 1) x
    want = 4 * (y - 1).float().unsqueeze(-1) * x
    torch.testing.assert_close(cfg.gradient(x, model_kwargs={"y": y}), want)
    assert abs(cfg.gradient(x, model_kwargs={"y": y}).sum().item() - 2.28571) < 1e-5  # 0.8.9
