r"""EnergyMatchingLoss's flow term evaluates $\nabla V$ at $x_t + \sigma\xi$,
$\xi \sim N(0, I)$. With the data and the source both at zero, $x_t = 0$ for every time
and every interpolant, so the points the model sees are $\sigma\xi$: mean 0, variance
$\sigma^2$ per coordinate (a closed form)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchebm.flows import EnergyMatchingLoss


class RecordingPotential(nn.Module):
    """$V(x) = |x|^2 / 2$ that keeps the points it is evaluated at."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return 0.5 * x.square().sum(1)


@pytest.mark.parametrize("sigma", [0.1, 0.5])
def test_flow_term_sees_x_t_plus_sigma_noise(sigma):
    n, d = 10_000, 4
    model = RecordingPotential()
    loss = EnergyMatchingLoss(
        model, coupling="independent", sigma=sigma, lambda_cd=0.0, dtype=torch.float64
    )
    zeros = torch.zeros(n, d, dtype=torch.float64)
    loss.training_losses(zeros, x0=zeros, generator=torch.Generator().manual_seed(40))
    (seen,) = model.seen  # one evaluation: the flow term's
    m = n * d
    assert abs(float(seen.mean())) < 4 * sigma / math.sqrt(m)
    var = float(seen.square().mean())  # known mean 0
    tol = 4 * sigma**2 * math.sqrt(2.0 / m)  # 4 standard errors: 2.8% (5% in sigma fails)
    assert abs(var - sigma**2) < tol, (var, sigma**2, tol)
