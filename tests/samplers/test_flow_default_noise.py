"""FlowSampler's default starting noise is the path's noise at t0 (VE: N(0, sigma_max^2))."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchebm.interpolants import VarianceExplodingInterpolant
from torchebm.samplers import FlowSampler

M, S = 1.0, 0.5  # data law N(M, S^2)
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


class GeometricVEField(nn.Module):
    r"""Exact velocity of $x_t = x_1 + \sigma(t) x_0$, $\sigma(t) = \sigma_{max}^{1-t}
    \sigma_{min}^t$, for $x_1 \sim N(M, S^2)$: $v = \sigma\dot\sigma (x - M) / (S^2 + \sigma^2)$,
    written here from the closed form (not from the interpolant). ``x`` `(B, D)`, ``t`` `(B,)`."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        log_ratio = math.log(SIGMA_MIN / SIGMA_MAX)
        sigma = SIGMA_MAX * torch.exp(t[:, None] * log_ratio)
        return sigma.square() * log_ratio * (x - M) / (S**2 + sigma.square())


@pytest.mark.parametrize("mode", ["ode", "sde"])
def test_default_noise_on_the_ve_path_samples_the_data_law(mode):
    # standard normal noise at t = 0, where the path's law is N(M, S^2 + 80^2), was carried by
    # the exact flow to N(M, (S / 80)^2): std 0.0063 for 0.5
    interp = VarianceExplodingInterpolant(SIGMA_MIN, SIGMA_MAX)
    fs = FlowSampler(GeometricVEField(), mode=mode, interpolant=interp, dtype=torch.float64)
    n = 20_000
    x = fs.sample(dim=1, n_samples=n, generator=torch.Generator().manual_seed(0))
    # 5 standard errors of the sample mean and std of n draws of N(M, S^2), plus 3% for the
    # integrator (default dopri5 tolerances; Euler-Maruyama's 250 steps)
    assert abs(x.mean().item() - M) < 5 * S / math.sqrt(n) + 0.03 * S, x.mean()
    assert abs(x.std().item() / S - 1) < 5 / math.sqrt(2 * n) + 0.03, x.std()


def test_given_noise_and_unit_sigma_paths_are_unchanged():
    # the linear path has sigma(0) = 1: the default start is the plain standard normal draw
    field = GeometricVEField()
    lin = FlowSampler(lambda x, t: -x, integrator="euler", dtype=torch.float64)
    a = lin.sample(dim=2, n_samples=4, n_steps=3, generator=torch.Generator().manual_seed(1))
    x0 = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, x0 * (1 - 1 / 3) ** 3, rtol=1e-12, atol=0)
    # a given x is used as it is, also on the VE path
    ve = FlowSampler(field, interpolant="ve", integrator="euler", dtype=torch.float64)
    start = torch.zeros(3, 1, dtype=torch.float64)
    out = ve.sample(x=start, n_steps=1)
    torch.testing.assert_close(out, start + field(start, torch.zeros(3, dtype=torch.float64)))
