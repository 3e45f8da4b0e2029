"""The default cost of the cost couplings works at any scale of the samples.

Before the fix the squared Euclidean cost of float32 samples of scale 1e20 overflowed
(NonFiniteError), and of scale 1e-30 underflowed to an all-zero cost (an arbitrary
assignment). The assignment is invariant to a positive rescaling of the cost, so the
rescaled computation must give float64's assignment at the same inputs.
"""

from __future__ import annotations

import pytest
import torch

from torchebm.couplings import (
    ExactOTCoupling,
    GreedyCoupling,
    SinkhornCoupling,
    UnbalancedSinkhornCoupling,
)

COUPLINGS = [ExactOTCoupling, SinkhornCoupling, GreedyCoupling, UnbalancedSinkhornCoupling]
SCALES = [1e-30, 1e-20, 1.0, 1e20, 1e37]


def _samples():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(16, 3, generator=g, dtype=torch.float64)
    return x0, torch.randn(16, 3, generator=g, dtype=torch.float64) + 0.5


@pytest.mark.parametrize("scale", SCALES)
def test_the_normalised_cost_is_scale_free(scale):
    x0, x1 = _samples()
    ref = ExactOTCoupling().compute_cost(x0, x1)  # float64, scale 1
    for dtype, rtol in (
        (torch.float32, 64 * torch.finfo(torch.float32).eps),
        (torch.float64, 1e-12),
    ):
        cost = ExactOTCoupling().compute_cost((x0 * scale).to(dtype), (x1 * scale).to(dtype))
        assert cost.dtype == dtype and bool(torch.isfinite(cost).all())
        # entries relative to the largest (1): float32 rounds each coordinate to eps
        torch.testing.assert_close(cost.double(), ref, rtol=0, atol=rtol)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("cls", COUPLINGS)
def test_float32_assignment_is_float64_assignment_at_every_scale(cls, scale):
    x0, x1 = _samples()

    def index(a, b):
        return cls()(a, b, generator=torch.Generator().manual_seed(1)).index

    want = index(x0 * scale, x1 * scale)
    assert torch.equal(want, index(x0, x1))  # float64 is scale free too
    got = index((x0 * scale).float(), (x1 * scale).float())
    if cls in (SinkhornCoupling, UnbalancedSinkhornCoupling):
        # draws from the plan: torch's multinomial may draw differently from a float32 and
        # a float64 plan (torch 2.4 does), so float32 is compared with float32 at scale 1
        want = index(x0.float(), x1.float())
    assert torch.equal(got, want)


def test_float64_beyond_its_square_range():
    x0, x1 = _samples()
    want = ExactOTCoupling()(x0, x1).index
    assert torch.equal(ExactOTCoupling()(x0 * 1e200, x1 * 1e200).index, want)


def test_samples_without_features_have_zero_cost():
    cost = ExactOTCoupling().compute_cost(torch.zeros(3, 0), torch.zeros(3, 0))
    assert torch.equal(cost, torch.zeros(3, 3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cls", COUPLINGS)
def test_half_precision_batches_are_coupled(cls, dtype):
    """CPU ``cdist`` has no float16/bfloat16 kernel (NotImplementedError before): the cost is
    computed in float32, and a deterministic coupling pairs like float32 at the same values."""
    x0, x1 = (v.to(dtype) for v in _samples())
    result = cls()(x0, x1, generator=torch.Generator().manual_seed(1))
    assert result.x1.dtype == dtype and result.index.shape == (16,)
    assert bool(torch.isfinite(result.x1.float()).all())
    if cls in (ExactOTCoupling, GreedyCoupling):
        want = cls()(x0.float(), x1.float()).index
        assert torch.equal(result.index, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_normalised_cost_is_the_unscaled_one_bit_for_bit(dtype):
    """Dividing by a power of two is exact: where nothing overflows the cost equals the
    plain ``cdist(x0 - c, x1 - c)**2 / max`` of the scaled, centred samples to the last bit (a cost that differed in rounding made
    the exact-OT auction take 1.6x as long on the 1024-point benchmark)."""
    x0, x1 = (v.to(dtype) * 3.7 for v in _samples())
    x0, x1 = x0 / 8, x1 / 8  # the power of two that the cost divides by (max |value| in [4, 8))
    c = 0.5 * (x0.mean(0) + x1.mean(0))  # ... and the centring (benchmarks/_ot.py does both)
    plain = torch.cdist(x0 - c, x1 - c).square()
    plain = plain / plain.max()
    assert torch.equal(ExactOTCoupling().compute_cost(x0, x1), plain)


def _greedy_float64(cost: torch.Tensor) -> torch.Tensor:
    """Sequential greedy matching: commit the cheapest pair of a free row and a free column."""
    c, idx = cost.clone(), torch.full((cost.shape[0],), -1, dtype=torch.long)
    for _ in range(cost.shape[0]):
        i, j = divmod(int(c.argmin()), c.shape[1])
        idx[i] = j
        c[i, :], c[:, j] = float("inf"), float("inf")
    return idx


@pytest.mark.parametrize("offset", [0.0, 1e3, 1e4])
@pytest.mark.parametrize("cls", [ExactOTCoupling, GreedyCoupling])
def test_float32_batches_far_from_the_origin(cls, offset):
    """Both batches at an offset of 1e4 (float32, B = 64 > 25: cdist's matmul path): its
    |a|^2 + |b|^2 - 2ab cancelled (error ~1e8 eps = 6 against distances ~1) and the exact-OT
    cost was 12x the optimum (4% at 1e3). References in float64 on the same float32 samples:
    in 1-D the optimal assignment is the sorted matching; greedy by a sequential loop."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 1, generator=g, dtype=torch.float64)
    x1 = 0.5 * torch.randn(64, 1, generator=g, dtype=torch.float64) + 0.3
    a, b = (x0 + offset).float(), (x1 + offset).float()  # the float32 samples coupled
    a64, b64 = a.double(), b.double()
    cost64 = (a64 - b64.T).square()
    pairs = cls()(a, b)
    if cls is GreedyCoupling:
        assert torch.equal(pairs.index, _greedy_float64(cost64))
        return
    got = (pairs.x0.double() - pairs.x1.double()).square().sum()
    opt = (a64.sort(0).values - b64.sort(0).values).square().sum()
    # the auction's bound (tol = 1e-4 of the largest cost) plus twice B float32 roundings of
    # the centred entries a^2 + b^2 - 2ab, each below 8 eps M^2 (M: largest centred |value|)
    centred = torch.cat([a64, b64]) - 0.5 * (a64.mean() + b64.mean())
    m2, eps = float(centred.abs().max()) ** 2, torch.finfo(torch.float32).eps
    assert float(got - opt) <= 1e-4 * float(cost64.max()) + 2 * 64 * 8 * eps * m2


@pytest.mark.parametrize(("sd", "offset"), [(0.1, 1e6), (1.0, 1e7), (1e-3, 0.0)])
def test_sinkhorn_pairs_offset_or_scaled_data_as_at_the_origin(sd, offset):
    # the normalised cost was divided by max(cost.max(), 1e-12): data far from the origin
    # (scaled by 2^e of the offset, then centred) had cost.max() under the floor, so the
    # effective entropic regularisation grew (mean pair cost 3.73 sd^2 at offset 1e6 for 2.83
    # at the origin; independent pairing: 5.45). Sinkhorn depends on cost / max(cost) only.
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 2, generator=g, dtype=torch.float64)
    b = torch.randn(64, 2, generator=g, dtype=torch.float64) + 1

    def pairs(x0, x1):
        return SinkhornCoupling(reg=0.05)(x0, x1, generator=torch.Generator().manual_seed(1))

    ref = pairs(a, b)
    moved = pairs(sd * a + offset, sd * b + offset)
    assert torch.equal(moved.index, ref.index)


@pytest.mark.parametrize("cls", COUPLINGS)
@pytest.mark.parametrize("largest", [1.6e38, 3.0e38])
def test_finite_float32_samples_near_the_largest_float_keep_the_assignment(cls, largest):
    # from max|x| = 2^127 (1.7e38) on, the cost's scale 2^128 overflowed to inf in float32:
    # the cost was all zeros and the pairing arbitrary (exact OT 4.7x the optimum), silently
    x0, x1 = _samples()
    top = torch.maximum(x0.abs().max(), x1.abs().max())
    a, b = (x0 / top * largest).float(), (x1 / top * largest).float()
    assert bool(torch.isfinite(a).all() and torch.isfinite(b).all())
    assert ExactOTCoupling().compute_cost(a, b).max() == 1.0

    def index(a, b):
        return cls()(a, b, generator=torch.Generator().manual_seed(1)).index

    want = index(x0.float(), x1.float())  # float32 at scale 1 (Sinkhorn's draws: see above)
    assert torch.equal(index(a, b), want)
