"""Energy distance and MMD against their closed forms for Gaussians."""

import math

import pytest
import torch

from torchebm.cli._metrics import energy_distance, mmd_rbf


def _abs_normal_mean(m: float, s: float) -> float:
    """E|Z| for Z ~ N(m, s^2)."""
    phi = 0.5 * (1 + math.erf(-m / (s * math.sqrt(2))))
    return s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / (2 * s**2)) + m * (1 - 2 * phi)


def test_energy_distance_matches_the_closed_form_for_shifted_gaussians():
    gen = torch.Generator().manual_seed(0)
    mu, n = 1.0, 4000
    x = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    y = mu + torch.randn(n, 1, generator=gen, dtype=torch.float64)
    # D^2 = 2 E|X - Y| - E|X - X'| - E|Y - Y'| with X - Y ~ N(-mu, 2), X - X' ~ N(0, 2)
    exact = 2 * _abs_normal_mean(mu, math.sqrt(2)) - 2 * _abs_normal_mean(0.0, math.sqrt(2))
    assert exact == pytest.approx(0.5418, abs=1e-4)
    assert energy_distance(x, y) == pytest.approx(exact, abs=0.03)


def test_energy_distance_is_near_zero_for_equal_laws_and_symmetric():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(2000, 2, generator=gen), torch.randn(2000, 2, generator=gen)
    assert abs(energy_distance(x, y)) < 0.01
    z = torch.randn(500, 2, generator=gen) + 0.5
    assert energy_distance(x, z) == pytest.approx(energy_distance(z, x), rel=1e-12)


def test_mmd_single_kernel_matches_the_closed_form():
    gen = torch.Generator().manual_seed(2)
    mu, h, n = 1.0, 1.0, 3000
    x = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    y = mu + torch.randn(n, 1, generator=gen, dtype=torch.float64)
    # E k(X, Y) = h / sqrt(h^2 + 2) exp(-mu^2 / (2 (h^2 + 2))) for unit-variance Gaussians
    c = h / math.sqrt(h**2 + 2)
    exact = 2 * c - 2 * c * math.exp(-(mu**2) / (2 * (h**2 + 2)))
    assert mmd_rbf(x, y, bandwidths=[h]) == pytest.approx(exact, abs=0.01)
    assert abs(mmd_rbf(x, torch.randn(n, 1, generator=gen, dtype=torch.float64))) < 0.005


def test_metrics_validate_their_input():
    with pytest.raises(ValueError, match="same number of features"):
        energy_distance(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="at least 2 samples"):
        mmd_rbf(torch.zeros(1, 2), torch.zeros(5, 2))
    with pytest.raises(TypeError):
        energy_distance([[0.0, 1.0]], torch.zeros(5, 2))
    with pytest.raises(ValueError, match="bandwidths"):
        mmd_rbf(torch.randn(5, 2), torch.randn(5, 2), bandwidths=[0.0])
