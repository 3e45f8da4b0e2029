"""torchebm.metrics under non-default options against closed forms: the biased energy
distance's known bias, and the permutation test's level with unequal sizes and a mixture
of bandwidths."""

from __future__ import annotations

import math

import torch

from torchebm.metrics import energy_distance, kernel_two_sample_test

F64 = torch.float64


def _abs_mean(m: float, s: float) -> float:
    """E|Z| for Z ~ N(m, s^2)."""
    return s * math.sqrt(2 / math.pi) * math.exp(-m * m / (2 * s * s)) + m * math.erf(
        m / (s * math.sqrt(2))
    )


def _repeat(fn, reps: int, seed: int) -> tuple[float, float]:
    g = torch.Generator().manual_seed(seed)
    vals = torch.tensor([float(fn(g)) for _ in range(reps)], dtype=F64)
    return float(vals.mean()), float(vals.std() / math.sqrt(reps))


def _draw(mu, n, m):
    def draw(g):
        x = torch.randn(n, 1, generator=g, dtype=F64)
        return x, mu + torch.randn(m, 1, generator=g, dtype=F64)

    return draw


def test_biased_energy_distance_carries_its_known_bias():
    # N(0, 1) vs N(mu, 1): E = 2 E|N(mu, 2)| - 2 E|N(0, 2)|. The V-statistic divides the
    # within-sample sums by n^2, so its mean is E + E|X - X'| / n + E|Y - Y'| / m
    mu, n, m = 0.8, 20, 30
    within = _abs_mean(0.0, math.sqrt(2))
    exact = 2 * _abs_mean(mu, math.sqrt(2)) - 2 * within
    biased = exact + within / n + within / m
    draw = _draw(mu, n, m)
    mean, se = _repeat(lambda g: energy_distance(*draw(g), estimator="biased"), 3000, 0)
    assert 4 * se < 0.05 * biased  # a 5% error fails
    assert abs(mean - biased) < 4 * se, (mean, biased, se)
    assert biased - exact > 4 * se  # the bias is resolved: the unbiased mean would fail


def test_permutation_test_level_with_unequal_sizes_and_several_bandwidths():
    g = torch.Generator().manual_seed(3)
    reps, alpha = 300, 0.05
    ps = torch.tensor(
        [
            kernel_two_sample_test(
                torch.randn(20, 2, generator=g, dtype=F64),
                torch.randn(35, 2, generator=g, dtype=F64),
                n_permutations=99,
                bandwidth=[0.5, 1.0, 2.0],
                generator=g,
            ).p_value
            for _ in range(reps)
        ]
    )
    # under H0 the p-value is uniform on {1/100, ..., 1}: Pr(p <= 0.05) = 0.05 exactly;
    # Binomial(300, 0.05) has sd 3.77: 15 +- 4 sd
    rejections = int((ps <= alpha).sum())
    assert rejections <= 15 + 4 * math.sqrt(reps * alpha * (1 - alpha)), rejections
    assert abs(float(ps.mean()) - 0.505) < 4 * math.sqrt(0.0833 / reps)
