"""Default-constructed entropic couplings are the plans of the documented (and torchebm
0.8.9) defaults, ``reg=0.05``, ``reg_marginal=1.0``, ``n_iters=100``, checked against a
float64 scaling-form Sinkhorn (`_support.ot_reference`): the API snapshot pins the defaults
as written, this test the plans they give."""

import torch
from _support.ot_reference import scaling_sinkhorn

from torchebm.couplings import SinkhornCoupling, UnbalancedSinkhornCoupling


def _batch():
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(24, 2, generator=g, dtype=torch.float64)
    return x0, 0.7 * torch.randn(24, 2, generator=g, dtype=torch.float64) + 0.5


def test_default_sinkhorn_plan():
    x0, x1 = _batch()
    sk = SinkhornCoupling()
    plan = sk._plan(sk.compute_cost(x0, x1))
    ref = scaling_sinkhorn(x0, x1, 0.05, 1.0, 100)
    assert torch.allclose(plan, ref, rtol=1e-6, atol=1e-9 * ref.max().item())


def test_default_unbalanced_sinkhorn_weights():
    x0, x1 = _batch()
    res = UnbalancedSinkhornCoupling()(x0, x1, generator=torch.Generator().manual_seed(0))
    mass = scaling_sinkhorn(x0, x1, 0.05, 1.0 / (1.0 + 0.05), 100).sum(1)
    assert (mass / mass.mean()).std() > 0.05  # the weights are not all 1 on this batch
    assert torch.allclose(res.weights, mass / mass.mean(), rtol=1e-6)
