"""RMHMC with a constant NON-diagonal metric keeps N(mu, Sigma) invariant.

Every metric in the suite is diagonal, where L = L^T: drawing the momentum as L^T xi
(covariance L^T L) instead of L xi (covariance G = L L^T) goes unseen. Here G has a
large off-diagonal term, so L^T L != G and that error moves the second moments by about
20 standard errors (5 steps from exact starts; 5 standard errors is the tolerance).
"""

import math

import torch

from torchebm.core import GaussianModel
from torchebm.samplers import RiemannianManifoldHMC

F64 = torch.float64
MU = torch.tensor([1.0, -2.0], dtype=F64)
COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=F64)
G = torch.tensor([[4.0, -1.8], [-1.8, 1.0]], dtype=F64)  # SPD, off-diagonal
Z = 5.0


def test_rmhmc_constant_nondiagonal_metric_keeps_the_gaussian_invariant():
    n = 4000
    gen = torch.Generator().manual_seed(0)
    x0 = MU + torch.randn(n, 2, dtype=F64, generator=gen) @ torch.linalg.cholesky(COV).mT
    rm = RiemannianManifoldHMC(
        GaussianModel(MU, COV),
        lambda x: G.expand(x.shape[0], 2, 2),
        step_size=0.25,
        n_leapfrog_steps=4,
        dtype=F64,
    )
    x = rm.sample(x=x0, n_steps=5, generator=torch.Generator().manual_seed(1))
    d = x - MU
    assert (d.mean(0).abs() <= Z * COV.diagonal().div(n).sqrt()).all(), d.mean(0)
    for v, ref in ((d[:, 0] ** 2, 1.0), (d[:, 1] ** 2, 1.0), (d[:, 0] * d[:, 1], 0.8)):
        se = float(v.std()) / math.sqrt(n)
        assert abs(float(v.mean()) - ref) <= Z * se, (float(v.mean()), ref, se)
