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
    plain ``cdist(x0, x1)**2 / max`` to the last bit (a cost that differed in rounding made
    the exact-OT auction take 1.6x as long on the 1024-point benchmark)."""
    x0, x1 = (v.to(dtype) * 3.7 for v in _samples())
    plain = torch.cdist(x0, x1).square()
    plain = plain / plain.max()
    assert torch.equal(ExactOTCoupling().compute_cost(x0, x1), plain)
