"""`mmd2`, `energy_distance` and `kernel_two_sample_test` on small samples of unequal sizes
against their defining double sums, written as numpy loops (Gretton et al. 2012, eq. 3-5;
Szekely & Rizzo 2013): exact to rounding whatever the sample size, so that a divisor off by
one (``n^2`` for ``n(n-1)``) or a term's factor fails."""

import itertools

import numpy as np
import pytest
import torch

from torchebm.metrics import energy_distance, kernel_two_sample_test, mmd2

RNG = np.random.default_rng(5)
X = RNG.standard_normal((4, 2))
Y = 0.8 * RNG.standard_normal((6, 2)) + 0.4


def _k(a, b, hs):
    return np.mean([np.exp(-np.sum((a - b) ** 2) / (2 * h * h)) for h in hs])


def _pairs(a, b, fn, skip_diagonal):
    return [
        fn(a[i], b[j])
        for i in range(len(a))
        for j in range(len(b))
        if not (skip_diagonal and i == j)
    ]


def _mmd2(x, y, hs, unbiased):
    k = lambda a, b: _k(a, b, hs)  # noqa: E731
    xx = np.mean(_pairs(x, x, k, unbiased))
    yy = np.mean(_pairs(y, y, k, unbiased))
    return xx + yy - 2 * np.mean(_pairs(x, y, k, False))


def _energy(x, y, unbiased):
    d = lambda a, b: np.sqrt(np.sum((a - b) ** 2))  # noqa: E731
    xx = np.mean(_pairs(x, x, d, unbiased))
    yy = np.mean(_pairs(y, y, d, unbiased))
    return 2 * np.mean(_pairs(x, y, d, False)) - xx - yy


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("hs", [[0.9], [0.5, 1.7]], ids=["one_bandwidth", "two_bandwidths"])
def test_mmd2_is_its_double_sum(estimator, hs):
    bandwidth = hs[0] if len(hs) == 1 else hs
    got = mmd2(torch.from_numpy(X), torch.from_numpy(Y), bandwidth=bandwidth, estimator=estimator)
    ref = _mmd2(X, Y, hs, estimator == "unbiased")
    assert abs(float(got) - ref) <= 1e-12 + 1e-10 * abs(ref)


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_energy_distance_is_its_double_sum(estimator):
    got = energy_distance(torch.from_numpy(X), torch.from_numpy(Y), estimator=estimator)
    ref = _energy(X, Y, estimator == "unbiased")
    assert abs(float(got) - ref) <= 1e-12 + 1e-10 * abs(ref)


def test_permutation_statistics_are_unbiased_mmds_of_splits():
    # 4 + 3 pooled points have 35 splits: every permuted statistic is the unbiased MMD^2 of
    # one of them, and the observed one that of the given split
    x, y = X, Y[:3]
    z = np.concatenate([x, y])
    res = kernel_two_sample_test(
        torch.from_numpy(x),
        torch.from_numpy(y),
        n_permutations=60,
        bandwidth=1.1,
        generator=torch.Generator().manual_seed(0),
    )
    splits = []
    for first in itertools.combinations(range(7), 4):
        rest = [i for i in range(7) if i not in first]
        splits.append(_mmd2(z[list(first)], z[rest], [1.1], True))
    splits = np.array(splits)
    assert abs(float(res.statistic) - _mmd2(x, y, [1.1], True)) < 1e-12
    null = res.null_statistics.numpy()
    assert np.abs(null[:, None] - splits[None, :]).min(1).max() < 1e-12
    assert res.p_value == (1 + int((null >= float(res.statistic)).sum())) / 61
