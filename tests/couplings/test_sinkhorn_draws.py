"""The targets that `SinkhornCoupling` and `UnbalancedSinkhornCoupling` draw for each source
row follow that row of the entropic plan (not its column), checked against a float64
scaling-form Sinkhorn written here."""

import pytest
import torch
from _support.ot_reference import scaling_sinkhorn

from torchebm.couplings import SinkhornCoupling, UnbalancedSinkhornCoupling

K = 100  # copies of each of the three source and target points: B = 300 rows
SOURCES = ((0.0, 0.0), (1.0, 0.0), (2.0, 0.0))
TARGETS = ((0.5, 0.0), (1.5, 0.0), (-0.5, 0.0))


def _grouped_batch():
    x0 = torch.tensor(SOURCES, dtype=torch.float64).repeat_interleave(K, 0)
    x1 = torch.tensor(TARGETS, dtype=torch.float64).repeat_interleave(K, 0)
    return x0, x1


@pytest.mark.parametrize(
    "make, phi",
    [
        (lambda: SinkhornCoupling(reg=0.3, n_iters=100), 1.0),
        (
            lambda: UnbalancedSinkhornCoupling(reg=0.3, reg_marginal=0.5, n_iters=100),
            0.5 / (0.5 + 0.3),
        ),
    ],
    ids=["balanced", "unbalanced"],
)
def test_each_row_draws_from_its_row_of_the_plan(make, phi):
    x0, x1 = _grouped_batch()
    plan = scaling_sinkhorn(x0, x1, 0.3, phi, 100)
    # P(target group h | source group s): every row of a group has the same plan row
    row = plan.reshape(3, K, 3, K).sum(-1)[:, 0]  # (source group, target group)
    expected = row / row.sum(1, keepdim=True)
    col = plan.reshape(3, K, 3, K).sum(1)[:, :, 0].T  # what drawing from columns would give
    assert (expected - col / col.sum(1, keepdim=True)).abs().max() > 0.2  # the design tells
    res = make()(x0, x1, generator=torch.Generator().manual_seed(0))
    target_group = res.index // K
    freq = (
        torch.stack(
            [torch.bincount(target_group[s * K : (s + 1) * K], minlength=3) for s in range(3)]
        ).double()
        / K
    )
    se = (expected * (1 - expected) / K).sqrt()
    # 4 standard errors of a binomial frequency over K rows (at most 0.05 here); drawing
    # from the columns instead moves some frequencies by 0.33
    assert ((freq - expected).abs() <= 4 * se + 1e-12).all(), (freq, expected)
