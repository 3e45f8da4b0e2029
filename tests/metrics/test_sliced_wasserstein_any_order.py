"""`sliced_wasserstein` for large orders p, and for float32 and float64 copies of one sample.

|gap|^p of the rescaled samples (largest magnitude below 1) underflowed to 0 for a large p
(float32 at p = 64, float64 at p = 512): the metric said "identical laws" in silence. The
directions were drawn in the samples' dtype, so a float32 and a float64 copy of the same
samples saw other directions (2.7 % apart for one generator). The reference here is written
in float64 on directions drawn as documented (float32 normals), with the exact 1-D distance
of merged quantile levels, each power taken relative to the largest gap.
"""

from __future__ import annotations

import pytest
import torch

from torchebm.metrics import sliced_wasserstein

F64 = torch.float64


def _reference(x, y, p, k, seed):
    theta = torch.randn(x.shape[1], k, generator=torch.Generator().manual_seed(seed)).to(F64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    u, v = (x.to(F64) @ theta).sort(0).values, (y.to(F64) @ theta).sort(0).values
    n, m = len(u), len(v)
    levels = torch.cat(
        [torch.arange(1, n + 1, dtype=F64) / n, torch.arange(1, m + 1, dtype=F64) / m]
    )
    levels = levels.sort().values
    widths = torch.diff(levels, prepend=torch.zeros(1, dtype=F64))
    mid = levels - widths / 2
    iu, iv = (mid * n).floor().long().clamp(max=n - 1), (mid * m).floor().long().clamp(max=m - 1)
    gaps = (u[iu] - v[iv]).abs()  # (a repeated level has width 0)
    top = gaps.max()
    return float(top * (((gaps / top) ** p) * widths[:, None]).sum(0).mean() ** (1 / p))


@pytest.mark.parametrize(
    ("dtype", "p", "rel"),
    [(torch.float32, 2.0, 1e-5), (torch.float32, 64.0, 1e-5), (torch.float32, 200.0, 1e-4),
     (F64, 2.0, 1e-10), (F64, 512.0, 1e-10), (F64, 2048.0, 1e-10)],
)  # fmt: skip
@pytest.mark.parametrize("sizes", [(600, 600), (600, 450)])
def test_sliced_wasserstein_of_any_order_against_a_float64_reference(dtype, p, rel, sizes):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(sizes[0], 3, generator=g, dtype=F64)
    y = torch.randn(sizes[1], 3, generator=g, dtype=F64) * 1.2 + 0.3
    got = sliced_wasserstein(
        x.to(dtype), y.to(dtype), p=p, n_projections=40, generator=torch.Generator().manual_seed(1)
    )
    want = _reference(x.to(dtype), y.to(dtype), p, 40, 1)
    assert want > 0.3  # the largest gaps dominate: far from 0
    assert abs(float(got) - want) <= rel * want, (float(got), want)


def test_float32_and_float64_copies_see_the_same_directions():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(500, 4, generator=g, dtype=F64)
    y = torch.randn(500, 4, generator=g, dtype=F64) + 0.5
    values = [
        float(sliced_wasserstein(x.to(d), y.to(d), generator=torch.Generator().manual_seed(3)))
        for d in (torch.float32, F64)
    ]
    assert abs(values[0] - values[1]) <= 1e-5 * values[1]


def test_many_blocks_of_directions_are_rescaled_to_one_scale():
    # 40 000 + 40 000 samples: the 64 directions are summed in two blocks (52 and 12), each relative to
    # its own largest gap, then brought to a common one
    g = torch.Generator().manual_seed(4)
    x = torch.randn(40_000, 2, generator=g, dtype=F64)
    y = torch.randn(40_000, 2, generator=g, dtype=F64) * 1.5
    for seed in range(5, 15):  # the largest gap falls in the second block for some seeds
        got = sliced_wasserstein(
            x, y, p=300.0, n_projections=64, generator=torch.Generator().manual_seed(seed)
        )
        want = _reference(x, y, 300.0, 64, seed)
        assert abs(float(got) - want) <= 1e-10 * want, seed
