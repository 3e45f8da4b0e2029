r"""ParallelTemperingCD's tempered model: replica $r$ sees the energy $E/T_r$ and its
gradient $\nabla E / T_r$, so an exact sampler of what it sees draws $p^{1/T_r}$.

The energy is $E(x) = |x|^2 / (2\sigma^2)$; the test's sampler reads the precision of the
quadratic it is handed (from the tempered energy or from the tempered gradient at
$x = 1$) and draws exactly from it. Each replica must then hold $N(0, T_r\sigma^2)$
(the swaps keep the product of exact replica laws), a closed form.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.core import GaussianModel
from torchebm.losses import ParallelTemperingCD

SIGMA2, DIM, N_CHAINS, TEMPS = 2.0, 4, 20_000, (1.0, 3.0)


class ExactQuadraticDraw:
    r"""Draws each row from $N(0, 1/\lambda)$, $\lambda$ the per-row precision of the
    isotropic quadratic energy ``self.model`` (read from the energy or from its gradient)."""

    def __init__(self, model, via):
        self.model, self.via = model, via

    def sample(self, x=None, n_steps=1, generator=None, **kwargs):
        ones = torch.ones_like(x)
        if self.via == "energy":  # E(1) = lambda * DIM / 2
            prec = (2.0 * self.model(ones) / DIM).reshape(-1, 1)
        else:  # grad E(1) = lambda * 1
            prec = self.model.gradient(ones)[:, :1]
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return z / prec.sqrt()


@pytest.mark.parametrize("via", ["energy", "gradient"])
def test_each_replica_holds_the_tempered_gaussian(via):
    model = GaussianModel(torch.zeros(DIM), SIGMA2 * torch.eye(DIM))
    pt = ParallelTemperingCD(
        model, ExactQuadraticDraw(model, via), temperatures=TEMPS, k_steps=1, swap_every=1
    )
    pt.negative_phase(torch.zeros(N_CHAINS, DIM), generator=torch.Generator().manual_seed(40))
    n = N_CHAINS * DIM
    for r, t in enumerate(TEMPS):
        var = float(pt.tempered_chains[r].double().square().mean())  # known mean 0
        exact = t * SIGMA2
        tol = 4 * exact * math.sqrt(2.0 / n)  # 4 standard errors: 2% (a 5% error fails)
        assert abs(var - exact) < tol, (r, var, exact, tol)
