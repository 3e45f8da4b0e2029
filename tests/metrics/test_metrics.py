"""torchebm.metrics against closed forms: MMD, energy distance, sliced Wasserstein,
the permutation test and the grid partition function."""

import math

import numpy as np
import pytest
import torch

from torchebm.core import GaussianModel
from torchebm.core.errors import ConfigurationError, NonFiniteError, ShapeError
from torchebm.metrics import (
    energy_distance,
    grid_log_partition,
    grid_nll,
    kernel_two_sample_test,
    median_bandwidth,
    mmd2,
    sliced_wasserstein,
)

F64 = torch.float64


def _gauss(n, mean, chol, gen):
    return mean + torch.randn(n, len(mean), generator=gen, dtype=F64) @ chol.T


def _expected_kernel(diff_mean, diff_cov, h):
    """E exp(-|Z|^2 / (2 h^2)) for Z ~ N(d, C): det(I + C/h^2)^(-1/2) exp(-d^T (C + h^2 I)^-1 d / 2)."""
    eye = torch.eye(len(diff_mean), dtype=F64)
    det = torch.linalg.det(eye + diff_cov / h**2)
    quad = diff_mean @ torch.linalg.solve(diff_cov + h**2 * eye, diff_mean)
    return float(det.rsqrt() * torch.exp(-0.5 * quad))


M1, M2 = torch.tensor([0.0, 0.0], dtype=F64), torch.tensor([1.0, -0.5], dtype=F64)
L1 = torch.tensor([[1.0, 0.0], [0.3, 0.8]], dtype=F64)
L2 = torch.tensor([[0.7, 0.0], [-0.2, 1.1]], dtype=F64)
S1, S2 = L1 @ L1.T, L2 @ L2.T


def _closed_mmd(h):
    z = torch.zeros(2, dtype=F64)
    exx = _expected_kernel(z, 2 * S1, h)
    eyy = _expected_kernel(z, 2 * S2, h)
    exy = _expected_kernel(M1 - M2, S1 + S2, h)
    return exx + eyy - 2 * exy, exx, eyy


def _repeat(fn, reps, seed):
    gen = torch.Generator().manual_seed(seed)
    vals = torch.tensor([float(fn(gen)) for _ in range(reps)], dtype=F64)
    return float(vals.mean()), float(vals.std() / math.sqrt(reps))


@pytest.mark.parametrize("bandwidth", [0.7, [0.3, 1.0, 2.5]])
def test_unbiased_mmd_matches_the_gaussian_closed_form(bandwidth):
    hs = bandwidth if isinstance(bandwidth, list) else [bandwidth]
    exact = sum(_closed_mmd(h)[0] for h in hs) / len(hs)
    n = 400

    def draw(g):
        return mmd2(_gauss(n, M1, L1, g), _gauss(n, M2, L2, g), bandwidth=bandwidth)

    mean, se = _repeat(draw, 100, 0)
    assert 3.5 * se < 0.05 * exact  # a 5% error is outside the tolerance: the test can fail
    assert abs(mean - exact) < 3.5 * se, (mean, exact, se)


def test_biased_mmd_carries_its_known_bias():
    h, n, m = 0.7, 50, 75
    exact, exx, eyy = _closed_mmd(h)
    # V-statistic: E = MMD^2 + (1 - E k(x, x')) / n + (1 - E k(y, y')) / m
    expected = exact + (1 - exx) / n + (1 - eyy) / m

    def draw(g):
        x, y = _gauss(n, M1, L1, g), _gauss(m, M2, L2, g)
        return mmd2(x, y, bandwidth=h, estimator="biased")

    mean, se = _repeat(draw, 200, 1)
    assert abs(mean - expected) < 3.5 * se
    assert abs(expected - exact) > 3.5 * se  # the bias is resolved, so the check bites


def test_metrics_vanish_in_expectation_for_identical_laws():
    def draw_mmd(g):
        return mmd2(_gauss(200, M1, L1, g), _gauss(200, M1, L1, g))

    def draw_ed(g):
        return energy_distance(_gauss(200, M1, L1, g), _gauss(200, M1, L1, g))

    for draw, seed in ((draw_mmd, 2), (draw_ed, 3)):
        mean, se = _repeat(draw, 40, seed)
        assert abs(mean) < 3.5 * se, (mean, se)
    gen = torch.Generator().manual_seed(4)
    x, y = _gauss(200, M1, L1, gen), _gauss(200, M1, L1, gen)
    assert float(mmd2(x, y, estimator="biased")) > 0
    assert float(energy_distance(x, y, estimator="biased")) > 0


def _abs_normal_mean(m: float, s: float) -> float:
    """E|Z| for Z ~ N(m, s^2)."""
    phi = 0.5 * (1 + math.erf(-m / (s * math.sqrt(2))))
    return s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / (2 * s**2)) + m * (1 - 2 * phi)


def test_energy_distance_matches_the_1d_closed_form():
    mu, sx, sy = 1.0, 1.0, 1.5
    # X - Y ~ N(-mu, sx^2 + sy^2), X - X' ~ N(0, 2 sx^2), Y - Y' ~ N(0, 2 sy^2)
    exact = (
        2 * _abs_normal_mean(mu, math.hypot(sx, sy))
        - _abs_normal_mean(0.0, sx * math.sqrt(2))
        - _abs_normal_mean(0.0, sy * math.sqrt(2))
    )

    def draw(g):
        x = sx * torch.randn(1000, 1, generator=g, dtype=F64)
        y = mu + sy * torch.randn(1000, 1, generator=g, dtype=F64)
        return energy_distance(x, y)

    mean, se = _repeat(draw, 100, 5)
    assert 3.5 * se < 0.05 * exact
    assert abs(mean - exact) < 3.5 * se


def test_energy_distance_in_2d_against_a_monte_carlo_of_single_gaussian_norms():
    # a different formula: E|Z| for the three Gaussian differences, from 4e6 draws of Z
    g = torch.Generator().manual_seed(6)

    def e_norm(mean, cov):
        z = mean + torch.randn(4_000_000, 2, generator=g, dtype=F64) @ torch.linalg.cholesky(cov).T
        return float(z.norm(dim=1).mean())

    z0 = torch.zeros(2, dtype=F64)
    reference = 2 * e_norm(M1 - M2, S1 + S2) - e_norm(z0, 2 * S1) - e_norm(z0, 2 * S2)

    def draw(gen):
        return energy_distance(_gauss(400, M1, L1, gen), _gauss(400, M2, L2, gen))

    mean, se = _repeat(draw, 100, 7)
    assert 3.5 * se + 2e-3 < 0.05 * reference
    assert abs(mean - reference) < 3.5 * se + 2e-3  # 2e-3: the reference's own MC error


def test_sliced_wasserstein_matches_the_gaussian_closed_form():
    # x ~ N(0, I), y ~ N(0, s^2 I): every direction sees N(0, 1) vs N(0, s^2), so
    # SW_2 = |1 - s| and SW_1 = |1 - s| E|Z| = |1 - s| sqrt(2 / pi), whatever the directions
    g = torch.Generator().manual_seed(8)
    s = 2.0
    x = torch.randn(3000, 3, generator=g, dtype=F64)
    y = s * torch.randn(3000, 3, generator=g, dtype=F64)
    assert float(sliced_wasserstein(x, y, n_projections=200, generator=g)) == pytest.approx(
        abs(1 - s), rel=0.03
    )
    sw1 = float(sliced_wasserstein(x, y, n_projections=200, p=1, generator=g))
    assert sw1 == pytest.approx(abs(1 - s) * math.sqrt(2 / math.pi), rel=0.03)
    # a shift d adds (theta . d)^2, whose mean over directions is |d|^2 / D: in 1-D exact
    x1, y1 = x[:, :1], 0.5 + s * y[:, :1] / s
    assert float(sliced_wasserstein(x1, y1, n_projections=4, generator=g)) ** 2 == pytest.approx(
        0.25 + (1 - s) ** 2, rel=0.03
    )


def test_sliced_wasserstein_with_unequal_sizes_is_the_exact_1d_distance():
    x = torch.tensor([[0.0], [1.0], [2.0]], dtype=F64)
    y = torch.tensor([[0.0], [3.0]], dtype=F64)
    # quantile functions on [0,1/3,1/2,2/3,1]: |0-0|/3 + |1-0|/6 + |1-3|/6 + |2-3|/3 = 5/6
    assert float(sliced_wasserstein(x, y, n_projections=3, p=1)) == pytest.approx(5 / 6)
    assert float(sliced_wasserstein(x, y, n_projections=3, p=2)) ** 2 == pytest.approx(
        0 / 3 + 1 / 6 + 4 / 6 + 1 / 3
    )


def test_permutation_p_values_are_uniform_under_h0_and_small_under_h1():
    g = torch.Generator().manual_seed(9)
    reps, alpha = 200, 0.05
    ps = []
    for _ in range(reps):
        x, y = (
            torch.randn(30, 2, generator=g, dtype=F64),
            torch.randn(30, 2, generator=g, dtype=F64),
        )
        ps.append(kernel_two_sample_test(x, y, n_permutations=99, generator=g).p_value)
    p = torch.tensor(ps)
    rejections = int((p <= alpha).sum())
    # Binomial(200, 0.05): mean 10, sd 3.08; +-3.3 sd
    assert 0 <= rejections <= 20, rejections
    assert float(p.mean()) == pytest.approx(0.5, abs=3.3 * math.sqrt(1 / 12 / reps))
    x = torch.randn(100, 2, generator=g, dtype=F64)
    y = torch.randn(100, 2, generator=g, dtype=F64) + torch.tensor([0.8, 0.0], dtype=F64)
    res = kernel_two_sample_test(x, y, n_permutations=199, generator=g)
    assert res.p_value == pytest.approx(1 / 200)
    assert float(res.statistic) == pytest.approx(float(mmd2(x, y)), rel=1e-10)


def test_median_bandwidth_is_the_median_pairwise_distance():
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[3.0], [7.0]])
    # distances 1, 3, 7, 2, 6, 4 -> median (3 + 4) / 2
    assert float(median_bandwidth(x, y)) == pytest.approx(3.5)


@pytest.mark.parametrize("n, ties", [(3, False), (4, False), (61, False), (300, False), (60, True)])
def test_median_bandwidth_against_numpy_median_of_all_pairwise_distances(n, ties):
    """Odd and even numbers of pairs (the mean of the two middle ones), tied distances."""
    g = torch.Generator().manual_seed(n)
    pts = torch.randint(0, 3, (n, 2), generator=g) if ties else torch.randn(n, 2, generator=g)
    pts = pts.to(F64)
    x, y = pts[: n // 2], pts[n // 2 :]
    a = pts.numpy()
    i, j = np.triu_indices(n, k=1)
    expected = np.median(np.sqrt(((a[i] - a[j]) ** 2).sum(1)))
    assert float(median_bandwidth(x, y)) == pytest.approx(expected, rel=1e-12)


def test_metrics_validate_their_input():
    x = torch.randn(5, 2)
    with pytest.raises(ShapeError, match="same number of features"):
        mmd2(x, torch.randn(5, 3))
    with pytest.raises(ShapeError, match="at least 2 samples"):
        energy_distance(torch.zeros(1, 2), x)
    with pytest.raises(TypeError, match="floating"):
        mmd2(torch.zeros(5, 2, dtype=torch.long), x)
    with pytest.raises(TypeError, match="torch.Tensor"):
        energy_distance([[0.0, 1.0]], x)
    with pytest.raises(NonFiniteError, match="NaN"):
        sliced_wasserstein(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), x)
    with pytest.raises(ConfigurationError, match="bandwidth"):
        mmd2(x, x, bandwidth=[1.0, 0.0])
    with pytest.raises(ConfigurationError, match="estimator"):
        mmd2(x, x, estimator="v")
    with pytest.raises(ConfigurationError, match="n_projections"):
        sliced_wasserstein(x, x, n_projections=0)
    with pytest.raises(ConfigurationError, match="p must be >= 1"):
        sliced_wasserstein(x, x, p=0.5)


@pytest.mark.parametrize("metric", [mmd2, energy_distance, sliced_wasserstein])
def test_metrics_refuse_two_event_shapes_and_accept_flat_samples(metric):
    # the same law in NCHW and NHWC layouts: flattened they have the same number of features
    # but not the same features (mmd2 read 0.29 for 1.8e-4, energy distance 5.4 for 2.8e-3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 3, 4, 4, generator=g), torch.randn(50, 3, 4, 4, generator=g)

    def call(a, b):  # sliced_wasserstein: the same directions for each call
        if metric is sliced_wasserstein:
            return metric(a, b, generator=torch.Generator().manual_seed(1))
        return metric(a, b)

    with pytest.raises(ShapeError, match="one event shape.*permute"):
        call(x, y.permute(0, 2, 3, 1))
    assert float(call(x, y.flatten(1))) == pytest.approx(float(call(x, y)), rel=1e-6)
    with pytest.raises(ShapeError, match=r"pass one-dimensional samples as x\[:, None\]"):
        metric(torch.randn(50), y.flatten(1)[:, :1])


@pytest.mark.parametrize(
    "metric",
    [
        mmd2,
        lambda x, y: mmd2(x, y, bandwidth=1.0),
        energy_distance,
        sliced_wasserstein,
        median_bandwidth,
        kernel_two_sample_test,
    ],
)
def test_metrics_refuse_zero_feature_samples(metric):
    # energy_distance, sliced_wasserstein and mmd2 with a given bandwidth returned 0 (all
    # distances of empty vectors are 0); the median heuristic blamed a zero median
    x = torch.randn(5, 2)
    with pytest.raises(ShapeError, match=r"y must have at least one feature, got shape \(6, 0\)"):
        metric(x, torch.zeros(6, 0))
    with pytest.raises(
        ShapeError, match=r"x must have at least one feature, got shape \(5, 3, 0\)"
    ):
        metric(torch.zeros(5, 3, 0), torch.zeros(6, 3, 0))


def test_grid_log_partition_of_a_gaussian_is_exact():
    cov = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=F64)
    model = GaussianModel(torch.tensor([20.0, -30.0]), 9.0 * cov, dtype=F64)  # far and wide
    exact = math.log(2 * math.pi) + 0.5 * math.log(float(torch.linalg.det(9.0 * cov)))
    res = grid_log_partition(model)
    assert res.log_z == pytest.approx(exact, abs=1e-4)
    assert res.error < 1e-4 and res.tail < -30
    (x0, x1), (y0, y1) = res.extent
    assert x0 < 20 < x1 and y0 < -30 < y1 and x1 - x0 < 200  # grown, then cropped
    narrow = GaussianModel(torch.zeros(2), 1e-4 * torch.eye(2), dtype=F64)
    assert grid_log_partition(narrow).log_z == pytest.approx(math.log(2 * math.pi * 1e-4), abs=1e-4)


@pytest.mark.parametrize("std", [3e-4, 1e-4, 1e-6])
def test_grid_log_partition_resolves_peaks_narrower_than_the_coarse_cells(std):
    # off the grid's nodes: the first crop keeps four coarse cells (0.25 wide), far wider
    # than the peak; the box is cropped again until it fits the mass
    model = GaussianModel(torch.tensor([0.03, 0.01]), std**2 * torch.eye(2), dtype=F64)
    res = grid_log_partition(model)
    exact = math.log(2 * math.pi * std**2)
    assert res.log_z == pytest.approx(exact, abs=1e-8)
    assert res.error < 1e-8
    assert res.extent[0][1] - res.extent[0][0] < 100 * std


def test_grid_nll_is_the_exact_gaussian_nll():
    cov = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=F64)
    model = GaussianModel(torch.tensor([0.5, -1.0]), cov, dtype=F64)
    g = torch.Generator().manual_seed(10)
    x = torch.randn(500, 2, generator=g, dtype=F64)
    exact = -torch.distributions.MultivariateNormal(model.mean, cov).log_prob(x).mean()
    res = grid_nll(model, x)
    assert res.nll == pytest.approx(float(exact), abs=1e-4)
    assert res.standard_error > 0


def test_grid_log_partition_rejects_unnormalisable_energies_and_bad_arguments():
    flat = lambda x: 0.0 * x.sum(1)  # noqa: E731
    with pytest.raises(ConfigurationError, match="not negligible"):
        grid_log_partition(flat, max_doublings=3)
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    with pytest.raises(ConfigurationError, match="odd"):
        grid_log_partition(model, n_points=100)
    with pytest.raises(ShapeError, match="energies"):
        grid_log_partition(lambda x: x, extent=((-1, 1), (-1, 1)))
    with pytest.raises(ShapeError, match=r"\(N, 2\)"):
        grid_nll(model, torch.zeros(4, 3))


def test_median_bandwidth_above_2048_points_is_reproducible_and_leaves_the_global_rng():
    """Above 2048 pooled points the heuristic uses a subset: without a generator a fixed
    draw (the metric is reproducible, a seeded run's later draws are unchanged); with one,
    that generator's draw. The subset's median estimates the full median (an independent
    numpy computation over all pairs)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1500, 2, generator=g, dtype=torch.float64)
    y = torch.randn(1500, 2, generator=g, dtype=torch.float64) + 0.5
    torch.manual_seed(123)
    first = median_bandwidth(x, y)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # the global stream did not move
    assert torch.equal(median_bandwidth(x, y), first)
    assert torch.equal(mmd2(x, y), mmd2(x, y))
    own = median_bandwidth(x, y, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(own, first)
    z = torch.cat([x, y]).numpy()
    full = np.median(np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))[np.triu_indices(3000, 1)])
    # a 2048-point subset's median: ~2.1M pairs, relative error well under 2 %
    assert abs(float(first) / full - 1) < 0.02 and abs(float(own) / full - 1) < 0.02
