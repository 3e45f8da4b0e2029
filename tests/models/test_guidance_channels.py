"""`ClassifierFreeGuidance` with ``guide_channels``: the guided channels follow Ho & Salimans'
$f(\\varnothing) + w (f(y) - f(\\varnothing))$ and the others are the unconditional output."""

import torch
from torch import nn

from torchebm.models import ClassifierFreeGuidance


class Field(nn.Module):
    """f(x, t, y) = x (1 + y) + t per channel: both evaluations are known in closed form."""

    def forward(self, x, t, y):
        return x * (1 + y.to(x.dtype)[:, None]) + t[:, None]


def test_guided_channels_and_unguided_channels():
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
    y, w, c = torch.tensor([1, 2, 3, 4]), 2.5, 3
    cond = x * (1 + y[:, None]) + t[:, None]
    uncond = x + t[:, None]  # null label 0
    out = ClassifierFreeGuidance(Field(), guidance_scale=w, null_condition=0, guide_channels=c)(
        x, t, y
    )
    torch.testing.assert_close(out[:, :c], uncond[:, :c] + w * (cond[:, :c] - uncond[:, :c]))
    torch.testing.assert_close(out[:, c:], uncond[:, c:])
