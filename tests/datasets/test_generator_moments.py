"""Noise scales and component splits of the functional makers against their closed forms.

`test_statistics.py` checks each geometry without noise; here the Gaussian noise term of
each maker is isolated and its standard deviation compared with the ``noise``/``std``
argument (5 standard errors of a sample std, ``5 / sqrt(2 m)`` relative, so that a 5%
error fails), and the uneven split of ``make_gaussian_mixture`` is checked against its
docstring (the first ``n mod K`` components get one more point).

Two ways to isolate the noise: an exact noise-free reference written out here (two moons
unshuffled, the swiss roll's spiral $r = \theta$), or, for the makers whose noise is the
last draw (documented as ``points + noise * xi``), the same generator seed with and
without noise: the difference is ``noise * xi`` exactly, xi standard normal.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.datasets import (
    make_checkerboard,
    make_circle,
    make_gaussian_mixture,
    make_grid,
    make_pinwheel,
    make_swiss_roll,
    make_two_moons,
    make_two_spirals,
)

F64 = torch.float64


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_std(resid: torch.Tensor, sigma: float) -> None:
    """Per coordinate: mean 0 and standard deviation ``sigma`` within 5 standard errors."""
    m = resid.shape[0]
    assert resid.mean(0).abs().max().item() < 5 * sigma / math.sqrt(m)
    assert (resid.std(0) / sigma - 1).abs().max().item() < 5 / math.sqrt(2 * m)


def test_two_moons_noise_around_the_exact_arcs():
    n, noise = 40_000, 0.2
    x = make_two_moons(n, noise=noise, shuffle=False, generator=seeded(0), dtype=F64)
    a_out = torch.linspace(0, math.pi, n // 2, dtype=F64)
    a_in = torch.linspace(0, math.pi, n - n // 2, dtype=F64)
    clean = torch.cat(
        [
            torch.stack([torch.cos(a_out), torch.sin(a_out)], 1),
            torch.stack([1 - torch.cos(a_in), 0.5 - torch.sin(a_in)], 1),
        ]
    )
    assert_std(x - clean, noise)


def test_swiss_roll_noise_across_the_spiral():
    """Raw point $t(\\cos t, \\sin t) + s\\xi$, undone with the analytic normalisation; the
    residual $r - t$ (t: the spiral's angle unwrapped by the radius) is $s(\\xi_r - \\xi_\\perp /
    r)$ to first order, of variance $s^2 (1 + E[r^{-2}])$, $E[r^{-2}] = 1/(27\\pi^2)$ for
    $t \\sim U[3\\pi, 9\\pi]$."""
    n, s = 200_000, 0.5
    q = make_swiss_roll(n, noise=s, arclength=3.0, generator=seeded(1), dtype=F64)
    var_x = 39 * math.pi**2 / 2 + 0.25 + s**2
    var_y = 39 * math.pi**2 / 2 - 0.25 - 1.0 + s**2
    p = q * (math.sqrt(var_x) + math.sqrt(var_y)) + torch.tensor([0.0, 1.0], dtype=F64)
    r, theta = p.norm(dim=1), torch.atan2(p[:, 1], p[:, 0])
    t = theta + 2 * math.pi * torch.round((r - theta) / (2 * math.pi))
    resid = r - t
    sigma = s * math.sqrt(1 + 1 / (27 * math.pi**2))
    # the sample normalisation (vs the analytic one) and second-order terms: within 1%
    assert abs(resid.std().item() / sigma - 1) < 5 / math.sqrt(2 * n) + 0.01
    assert abs(resid.mean().item()) < 0.05


NOISY_LAST = {
    "circle": lambda s, g: make_circle(20_000, noise=s, radius=1.5, generator=g, dtype=F64),
    "checkerboard": lambda s, g: make_checkerboard(20_000, noise=s, generator=g, dtype=F64),
    "pinwheel": lambda s, g: make_pinwheel(20_000, noise=s, generator=g, dtype=F64),
    "two_spirals": lambda s, g: make_two_spirals(20_000, noise=s, generator=g, dtype=F64),
    "grid": lambda s, g: make_grid(150, noise=s, generator=g, dtype=F64),
    "gaussian_mixture": lambda s, g: make_gaussian_mixture(
        20_000, n_components=5, std=s, generator=g, dtype=F64
    ),
}


@pytest.mark.parametrize("name", sorted(NOISY_LAST))
def test_the_noise_term_has_the_requested_standard_deviation(name):
    make, sigma = NOISY_LAST[name], 0.3
    clean, noisy = make(0.0, seeded(2)), make(sigma, seeded(2))
    assert_std(noisy - clean, sigma)


def test_gaussian_mixture_uneven_split_goes_to_the_first_components():
    n, k, r = 23, 5, 2.0  # 23 = 4 * 5 + 3: components 0, 1, 2 get 5 points, 3 and 4 get 4
    x = make_gaussian_mixture(n, n_components=k, std=0.0, radius=r, generator=seeded(3), dtype=F64)
    ang = 2 * math.pi * torch.arange(k, dtype=F64) / k
    centres = r * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    label = torch.cdist(x, centres).argmin(1)
    assert torch.cdist(x, centres).min(1).values.max().item() < 1e-12
    assert torch.bincount(label, minlength=k).tolist() == [5, 5, 5, 4, 4]
