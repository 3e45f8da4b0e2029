"""``t_sampler``/``loss_weight_fn`` on EquilibriumMatchingLoss and EnergyMatchingLoss."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchebm.flows import EnergyMatchingLoss, EquilibriumMatchingLoss


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 2)

    def forward(self, x, t):
        return self.net(x)


class Potential(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.SiLU(), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


def test_eqm_lognormal_times_have_the_requested_logit_moments():
    torch.manual_seed(0)
    n, mu, s = 20_000, 0.5, 0.8
    eqm = EquilibriumMatchingLoss(Field(), t_sampler="lognormal", t_p_mean=mu, t_p_std=s)
    t = eqm.training_losses(torch.randn(n, 2), generator=torch.Generator().manual_seed(1))["t"]
    logit = torch.log(t / (1 - t)).double()
    assert abs(logit.mean().item() + mu) < 5 * s / math.sqrt(n)
    assert abs(logit.std().item() - s) < 5 * s / math.sqrt(2 * (n - 1))


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: EquilibriumMatchingLoss(Field(), **kw),
        lambda **kw: EnergyMatchingLoss(Potential(), lambda_cd=0.0, sigma=0.0, **kw),
    ],
)
def test_loss_weight_fn_and_callable_sampler(make):
    torch.manual_seed(0)
    x = torch.randn(64, 2)

    def at(value):
        return lambda b, *, device, dtype, generator: torch.full((b,), value, dtype=dtype)

    plain = make(t_sampler=at(0.3))
    weighted = make(t_sampler=at(0.3), loss_weight_fn=lambda t: 1.0 + t)
    weighted.load_state_dict(plain.state_dict())
    a = plain(x, generator=torch.Generator().manual_seed(2))
    b = weighted(x, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(b, 1.3 * a)
    with pytest.raises(ValueError, match="t_sampler"):
        make(t_sampler="beta")
    with pytest.raises(TypeError, match="loss_weight_fn"):
        make(loss_weight_fn=3)
