"""LabelClassifierFreeGuidance on a base with a 1-D output (B,) (e.g. a label-conditioned
energy): f_s = f(null) + s (f(y) - f(null)), the docstring's formula, exactly."""

import torch
from torch import nn

from torchebm.models import LabelClassifierFreeGuidance


class ScalarPerLabel(nn.Module):
    """f(x, t, y) = a[y] * x.sum(-1) + t: one number per row."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([1.0, 2.0, 3.0, 0.5]), requires_grad=False)

    def forward(self, x, t, y):
        return self.a[y] * x.sum(-1) + t


def test_one_dimensional_output_follows_the_formula():
    base = ScalarPerLabel().eval()
    x, t, y = (
        torch.randn(6, 2, dtype=torch.float32),
        torch.rand(6),
        torch.tensor([0, 1, 2, 0, 1, 2]),
    )
    s, null = 4.0, 3
    got = LabelClassifierFreeGuidance(base, null_label_id=null, cfg_scale=s, guide_channels=None)(
        x, t, y=y
    )
    cond = base(x, t, y)
    uncond = base(x, t, torch.full_like(y, null))
    assert got.shape == (6,)
    torch.testing.assert_close(got, uncond + s * (cond - uncond), rtol=1e-6, atol=1e-6)
