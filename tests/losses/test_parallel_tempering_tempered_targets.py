r"""ParallelTemperingCD's tempered model: replica $r$ sees the energy $E/T_r$ and its
gradient $\nabla E / T_r$, so an exact sampler of what it sees draws $p^{1/T_r}$.

The energy is $E(x) = |x|^2 / (2\sigma^2)$; the test's sampler reads the precision of the
quadratic it is handed (from the tempered energy or from the tempered gradient at
$x = 1$) and draws exactly from it at its own temperature $T_0$ (declared as
``stationary_temperature``, as a Langevin sampler with noise scale $\sqrt{T_0}$ does). Each
replica must then hold $N(0, T_r T_0 \sigma^2)$ (the swaps keep the product of exact replica
laws), a closed form: a tempering that ignored ``base_temperature`` $T_0$ would give
$N(0, T_r T_0^2 \sigma^2)$.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.core import GaussianModel
from torchebm.losses import ParallelTemperingCD

SIGMA2, DIM, N_CHAINS, TEMPS = 2.0, 4, 20_000, (1.0, 3.0)


class ExactQuadraticDraw:
    r"""Draws each row from $N(0, T_0/\lambda)$, $\lambda$ the per-row precision of the
    isotropic quadratic energy ``self.model`` (read from the energy or from its gradient)."""

    def __init__(self, model, via, temperature=1.0):
        self.model, self.via, self.stationary_temperature = model, via, temperature

    def sample(self, x=None, n_steps=1, generator=None, **kwargs):
        ones = torch.ones_like(x)
        if self.via == "energy":  # E(1) = lambda * DIM / 2
            prec = (2.0 * self.model(ones) / DIM).reshape(-1, 1)
        else:  # grad E(1) = lambda * 1
            prec = self.model.gradient(ones)[:, :1]
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return z * (self.stationary_temperature / prec).sqrt()


@pytest.mark.parametrize("base_temperature", [1.0, 0.25])
@pytest.mark.parametrize("via", ["energy", "gradient"])
def test_each_replica_holds_the_tempered_gaussian(via, base_temperature):
    model = GaussianModel(torch.zeros(DIM), SIGMA2 * torch.eye(DIM))
    pt = ParallelTemperingCD(
        model,
        ExactQuadraticDraw(model, via, base_temperature),
        temperatures=TEMPS,
        k_steps=1,
        swap_every=1,
        base_temperature=base_temperature,
    )
    pt.negative_phase(torch.zeros(N_CHAINS, DIM), generator=torch.Generator().manual_seed(40))
    n = N_CHAINS * DIM
    for r, t in enumerate(TEMPS):
        var = float(pt.tempered_chains[r].double().square().mean())  # known mean 0
        exact = t * base_temperature * SIGMA2
        tol = 4 * exact * math.sqrt(2.0 / n)  # 4 standard errors: 2% (a 5% error fails)
        assert abs(var - exact) < tol, (r, var, exact, tol)
