"""The sample metrics at extreme scales of float32 data, against float64 at the same inputs.

Before the fix, float32 samples of scale 1e20 gave NaN (their squared distances overflow),
of scale 1e-30 gave 0 or a ConfigurationError (they underflow), and a float32 sum of
10^7 kernel values lost the difference `mmd2` and `energy_distance` are made of.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.core.errors import NonFiniteError
from torchebm.metrics import (
    energy_distance,
    kernel_two_sample_test,
    median_bandwidth,
    mmd2,
    sliced_wasserstein,
)

F32, F64 = torch.float32, torch.float64
EPS32 = torch.finfo(F32).eps
SCALES = [1e-30, 1e-20, 1.0, 1e20, 1e37]


def _samples(n=100, m=80, d=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=F64)
    return x, torch.randn(m, d, generator=g, dtype=F64) + 0.3


# float32 rounds each coordinate to EPS32 relative; a kernel value or a distance between the
# normalised samples (|coordinates| <= 1, d = 3) carries a few such errors, each term of the
# metrics as well: 64 EPS32 (7.6e-6) bounds them with room, absolute for mmd2 (its terms are
# kernel values <= 1) and relative for the metrics in the data's units.
TOL = 64 * EPS32


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("bandwidth", ["median", 1.5, "relative"])
def test_float32_mmd2_is_float64_mmd2_at_every_scale(scale, bandwidth):
    x, y = _samples()
    x, y = x * scale, y * scale
    bw = 1.5 * scale if bandwidth == "relative" else bandwidth
    for estimator in ("unbiased", "biased"):
        got = mmd2(x.float(), y.float(), bandwidth=bw, estimator=estimator)
        ref = mmd2(x, y, bandwidth=bw, estimator=estimator)
        assert got.dtype == F32 and math.isfinite(float(got))
        assert abs(float(got) - float(ref)) <= TOL, (scale, bandwidth, estimator)


@pytest.mark.parametrize("scale", SCALES)
def test_float32_energy_distance_and_median_scale_with_the_data(scale):
    x, y = _samples()
    ref_ed, ref_h = float(energy_distance(x, y)), float(median_bandwidth(x, y))
    xs, ys = (x * scale).float(), (y * scale).float()
    ed = energy_distance(xs, ys)
    assert ed.dtype == F32
    assert float(ed) == pytest.approx(ref_ed * scale, rel=TOL)
    assert float(median_bandwidth(xs, ys)) == pytest.approx(ref_h * scale, rel=TOL)
    assert float(energy_distance(x * scale, y * scale)) == pytest.approx(ref_ed * scale, rel=1e-12)


@pytest.mark.parametrize("scale", SCALES)
def test_float32_sliced_wasserstein_scales_with_the_data(scale):
    # the directions are drawn in the data's dtype: compare float32 with float32 at scale 1
    x, y = _samples()
    ref = float(
        sliced_wasserstein(x.float(), y.float(), generator=torch.Generator().manual_seed(0))
    )
    got = sliced_wasserstein(
        (x * scale).float(), (y * scale).float(), generator=torch.Generator().manual_seed(0)
    )
    assert float(got) == pytest.approx(ref * scale, rel=TOL)


def test_the_permutation_test_is_scale_free():
    x, y = _samples()
    ref = kernel_two_sample_test(
        x, y, n_permutations=50, generator=torch.Generator().manual_seed(0)
    )
    for scale in (1e-30, 1e20):
        r = kernel_two_sample_test(
            (x * scale).float(),
            (y * scale).float(),
            n_permutations=50,
            generator=torch.Generator().manual_seed(0),
        )
        assert abs(float(r.statistic) - float(ref.statistic)) <= TOL
        assert float(r.bandwidth) == pytest.approx(float(ref.bandwidth) * scale, rel=TOL)


def test_float32_sums_keep_a_small_mmd_and_energy_distance():
    # 4000 x 8: the metrics are ~1e-4 of their O(1) terms, so a float32 sum of the 1.6e7
    # terms (relative error ~ EPS32 of the total) was off by ~5e-4 of the result. Rows of
    # 4000 terms summed in float32 (pairwise) and the rows in float64 leave ~6e-6 (mmd2)
    # and ~2e-6 (energy distance): 5e-5 is 10x below the old error and 8x above the new
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 8, generator=g, dtype=F64)
    y = torch.randn(4000, 8, generator=g, dtype=F64) * 1.01
    for f, kw in ((mmd2, {"bandwidth": 3.0}), (energy_distance, {})):
        got, ref = float(f(x.float(), y.float(), **kw)), float(f(x, y, **kw))
        assert abs(got - ref) <= 5e-5 * abs(ref), f.__name__


def test_a_result_beyond_the_dtype_is_an_error_not_inf():
    x = torch.full((2, 1), 3e38)
    with pytest.raises(
        NonFiniteError, match=r"energy_distance .* beyond the range of torch.float32"
    ):
        energy_distance(x, -x)
    assert float(energy_distance(x.double(), -x.double())) == pytest.approx(2 * 6e38, rel=1e-6)


def _mmd2_u_reference(k: torch.Tensor, first: torch.Tensor) -> float:
    """Unbiased MMD^2 from the definition: ``k`` the pooled kernel matrix (float64), ``first``
    the 0/1 indicator of the first sample; the within-sample sums leave the diagonal out."""
    a, c = first, 1 - first
    n, m = float(a.sum()), float(c.sum())
    sxx = float(a @ k @ a - a @ k.diagonal())
    syy = float(c @ k @ c - c @ k.diagonal())
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * float(a @ k @ c) / (n * m)


def test_float32_permutation_test_sums_its_kernel_matrix_in_float64():
    # 2000 + 2000 points from one law: each statistic (~1e-4) is a difference of sums of
    # 1.6e7 kernel values of size O(1). Each float32 kernel value carries a relative error of
    # a few EPS32; independent, weighted +-1/n^2, they move a statistic by about
    # EPS32 (N + M) / n^2 (1.2e-10 here; measured <= 1.5e-10), and 16 of those bound it with
    # room. Sums of these values in float32 were off by ~EPS32 times the sums themselves
    # (measured 4e-10 to 1e-7: 1e-7 on the observed statistic), up to 50x above the bound.
    n, h, b = 2000, 1.0, 7
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
    res = kernel_two_sample_test(
        x, y, n_permutations=b, bandwidth=h, generator=torch.Generator().manual_seed(1)
    )
    assert res.statistic.dtype == F32 and res.null_statistics.dtype == F32
    # the same relabellings: the first n of a random permutation of the pooled sample each
    z = torch.cat([x, y]).double()
    draws = torch.Generator().manual_seed(1)
    splits = [(torch.arange(2 * n) < n).double()]
    for _ in range(b):
        splits.append(torch.zeros(2 * n, dtype=F64))
        splits[-1][torch.randperm(2 * n, generator=draws)[:n]] = 1.0
    d2 = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist") ** 2
    k = torch.exp(-d2 / (2 * h**2))
    ref = [_mmd2_u_reference(k, s) for s in splits]
    got = [float(res.statistic), *res.null_statistics.tolist()]
    bound = 16 * EPS32 * (2 * n) / n**2
    for i, (a, r) in enumerate(zip(got, ref)):
        assert abs(a - r) <= EPS32 * abs(r) + bound, (i, a, r)
    assert res.p_value == (1 + sum(v >= got[0] for v in got[1:])) / (1 + b)
