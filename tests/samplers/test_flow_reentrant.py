"""`FlowSampler`'s scaling of its default starting noise is per call: another `sample()`
running meanwhile (a nested call here; another thread alike) does not change it."""

from __future__ import annotations

import torch
from torch import nn

from torchebm.interpolants import VarianceExplodingInterpolant
from torchebm.samplers import FlowSampler


class Still(nn.Module):
    """A zero velocity field: the ODE leaves every chain at its start."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def test_nested_sample_does_not_change_the_outer_start_noise():
    sigma_max = 80.0
    sampler = FlowSampler(
        Still(), interpolant=VarianceExplodingInterpolant(sigma_max=sigma_max), mode="ode"
    )
    plain_check = sampler._check_interval
    given = torch.ones(3, 2)
    calls: list[torch.Tensor] = []

    def check_with_nested_call():
        if not calls:  # once: a second call with a given x runs inside the first one
            calls.append(given)
            calls[0] = sampler.sample(x=given, n_steps=2)
        return plain_check()

    sampler._check_interval = check_with_nested_call
    out = sampler.sample(dim=2, n_samples=5, n_steps=2, generator=torch.Generator().manual_seed(3))
    # the VE path starts at t0 = 0 with noise N(0, sigma_max^2 I): sigma_max * randn
    ref = sigma_max * torch.randn(5, 2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(calls[0], given)  # the nested call kept its given start
