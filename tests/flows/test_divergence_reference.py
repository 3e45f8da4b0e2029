"""The exact divergence of the PF-ODE likelihood equals a hand-written autograd loop bit for bit."""

from __future__ import annotations

import torch

from torchebm.flows._likelihood import _divergence


class _Field(torch.nn.Module):
    """A small MLP velocity `v(x, t)` (flows' tests cannot import torchebm.models)."""

    def __init__(self, d: int):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d + 1, 16), torch.nn.SiLU(), torch.nn.Linear(16, d)
        )

    def forward(self, x, t):
        return self.net(torch.cat([x, t[:, None]], dim=-1))


def test_exact_divergence_equals_hand_written_sum():
    torch.manual_seed(0)
    field = _Field(3)
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    t = torch.full((40,), 0.3)
    v, div = _divergence(field, x, t, None)
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        ref_v = field(xg, t)
        cols = [
            torch.autograd.grad(ref_v[:, i].sum(), xg, retain_graph=True)[0][:, i] for i in range(3)
        ]
    assert torch.equal(v, ref_v.detach())
    assert torch.equal(div, cols[0] + cols[1] + cols[2])
    assert not div.requires_grad and div.shape == (40,)


def test_divergence_of_a_constant_field_is_zero():
    x = torch.randn(5, 2)
    v, div = _divergence(lambda x, t: torch.ones_like(x), x, torch.zeros(5), None)
    assert torch.equal(div, torch.zeros(5)) and torch.equal(v, torch.ones(5, 2))
