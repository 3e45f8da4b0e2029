"""Summary statistics of each distribution against closed forms (fixed seeds, n-derived tolerances)."""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.datasets import (
    CheckerboardDataset,
    CircleDataset,
    EightGaussiansDataset,
    GaussianMixtureDataset,
    GridDataset,
    PinwheelDataset,
    SwissRollDataset,
    TwoMoonsDataset,
    TwoSpiralsDataset,
)

F64 = torch.float64


def wrap(a: torch.Tensor) -> torch.Tensor:
    """Wrap angles to [-pi, pi)."""
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def check_clusters(x: torch.Tensor, centres: torch.Tensor, std: float):
    """Nearest-centre assignment: equal counts, per-cluster mean and std as specified."""
    n, k = x.shape[0], centres.shape[0]
    label = torch.cdist(x, centres).argmin(dim=1)
    counts = torch.bincount(label, minlength=k)
    assert counts.max() - counts.min() <= 1 and counts.sum() == n  # split as evenly as possible
    m = n // k
    for j in range(k):
        pts = x[label == j]
        # mean: 5 standard errors per coordinate
        assert torch.allclose(pts.mean(0), centres[j], atol=5 * std / math.sqrt(m)), j
        # std: relative standard error of a sample std is ~ 1/sqrt(2m)
        assert abs(pts.std(0).mean().item() / std - 1) < 5 / math.sqrt(4 * m), j


def test_gaussian_mixture_centres_and_spread():
    n, k, std, r = 20000, 5, 0.1, 2.0
    x = GaussianMixtureDataset(n, n_components=k, std=std, radius=r, seed=0, dtype=F64).get_data()
    ang = 2 * math.pi * torch.arange(k, dtype=F64) / k
    centres = r * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    check_clusters(x, centres, std)
    # shuffled: the first fifth is not one component
    first = torch.cdist(x[: n // k], centres).argmin(1)
    assert torch.bincount(first, minlength=k).max() < 0.3 * (n // k)


def test_eight_gaussians_centres():
    n, std, s = 16000, 0.02, 2.0
    x = EightGaussiansDataset(n, std=std, scale=s, seed=1, dtype=F64).get_data()
    h = 1 / math.sqrt(2)
    centres = s * torch.tensor(
        [(1, 0), (-1, 0), (0, 1), (0, -1), (h, h), (h, -h), (-h, h), (-h, -h)], dtype=F64
    )
    check_clusters(x, centres, std)
    # second moment: E|x|^2 = s^2 + 2 std^2
    assert abs((x**2).sum(1).mean().item() - (s**2 + 2 * std**2)) < 0.01


def test_two_moons_exact_arcs_and_means():
    n = 2001
    x = TwoMoonsDataset(n, noise=0.0, seed=0, dtype=F64).get_data()
    on_outer = ((x.norm(dim=1) - 1).abs() < 1e-9) & (x[:, 1] >= -1e-12)
    on_inner = ((x - torch.tensor([1.0, 0.5], dtype=F64)).norm(dim=1) - 1).abs() < 1e-9
    on_inner &= x[:, 1] <= 0.5 + 1e-12
    assert bool((on_outer | on_inner).all())
    assert int(on_outer.sum()) == n // 2 and int(on_inner.sum()) == n - n // 2
    # shuffled by default: about half of the first half is outer moon
    frac = on_outer[: n // 2].double().mean().item()
    assert 0.4 < frac < 0.6
    ordered = TwoMoonsDataset(n, noise=0.0, seed=0, shuffle=False, dtype=F64).get_data()
    assert bool(((ordered[: n // 2].norm(dim=1) - 1).abs() < 1e-9).all())
    # with noise: mean = (1/2, 1/4) (outer: (0, 2/pi), inner: (1, 1/2 - 2/pi))
    n, noise = 20000, 0.1
    x = TwoMoonsDataset(n, noise=noise, seed=1, dtype=F64).get_data()
    tol = 5 * noise / math.sqrt(n) + 2e-3  # noise + linspace discretisation
    assert torch.allclose(x.mean(0), torch.tensor([0.5, 0.25], dtype=F64), atol=tol)


def test_swiss_roll_is_a_normalised_archimedean_spiral():
    n = 200_000  # the normalisation uses the sample mean/std: its error must stay small
    q = SwissRollDataset(n, noise=0.0, arclength=3.0, seed=0, dtype=F64).get_data()
    assert torch.allclose(q.mean(0), torch.zeros(2, dtype=F64), atol=1e-12)
    assert abs(q.std(0).mean().item() - 0.5) < 1e-9
    # Raw spiral t(cos t, sin t), t ~ U[3pi, 9pi]: mean (0, 1); per-axis variances from
    # E[t^2] = 39 pi^2 and E[t^2 cos 2t] = 1/2: var_x = 39pi^2/2 + 1/4, var_y = 39pi^2/2 - 1/4 - 1.
    var_x = 39 * math.pi**2 / 2 + 0.25
    var_y = 39 * math.pi**2 / 2 - 0.25 - 1.0
    scale = math.sqrt(var_x) + math.sqrt(var_y)  # 2 * mean per-axis std
    p = q * scale + torch.tensor([0.0, 1.0], dtype=F64)
    r = p.norm(dim=1)
    # radius = t ~ U[3pi, 9pi]: mean 6pi, std 6pi/sqrt(12)
    assert abs(r.mean().item() - 6 * math.pi) < 0.3
    assert abs(r.std().item() - 6 * math.pi / math.sqrt(12)) < 0.15
    # the angle of each point equals its radius (mod 2pi): it lies on the spiral. The
    # sample mean/std differ from the analytic ones by ~0.03 in radius units, hence the
    # tolerance; points off the spiral would give |residual| ~ U(0, pi), median pi/2.
    resid = wrap(torch.atan2(p[:, 1], p[:, 0]) - r)
    assert resid.abs().median().item() < 0.1


def test_circle_radius_and_uniform_angle():
    n, radius, noise = 20000, 1.5, 0.05
    x = CircleDataset(n, noise=noise, radius=radius, seed=0, dtype=F64).get_data()
    r = x.norm(dim=1)
    se = 5 * noise / math.sqrt(n)
    assert abs(r.mean().item() - radius) < se + noise**2 / radius  # E r ~ R + sigma^2/(2R)
    assert abs(r.std().item() / noise - 1) < 5 / math.sqrt(2 * n)
    theta = torch.atan2(x[:, 1], x[:, 0])
    # uniform angle: all low trigonometric moments vanish
    for m in (1, 2, 3):
        assert abs(torch.cos(m * theta).mean().item()) < 5 / math.sqrt(2 * n)
        assert abs(torch.sin(m * theta).mean().item()) < 5 / math.sqrt(2 * n)


def test_checkerboard_cells_and_marginals():
    n, limit = 32000, 4.0
    x = CheckerboardDataset(n, range_limit=limit, noise=0.0, seed=0, dtype=F64).get_data()
    assert bool((x.abs() <= limit).all())
    cells = torch.floor(x)
    assert bool((torch.remainder(cells.sum(1), 2) == 1).all())  # only black cells
    idx = ((cells[:, 0] + limit) * (2 * limit) + (cells[:, 1] + limit)).long()
    counts = torch.bincount(idx, minlength=int(2 * limit) ** 2)
    occupied = counts[counts > 0]
    assert occupied.numel() == 32
    expected = n / 32
    assert (occupied - expected).abs().max().item() < 5 * math.sqrt(expected)
    # marginals are uniform on [-L, L]: mean 0, variance L^2/3
    assert x.mean(0).abs().max().item() < 5 * limit / math.sqrt(3 * n)
    assert (x.var(0) - limit**2 / 3).abs().max().item() < 5 * math.sqrt(4 * limit**4 / 45 / n)


def test_pinwheel_arms():
    n, k, rs, a_s, ss = 20000, 5, 2.0, 0.1, 5.0
    x = PinwheelDataset(
        n,
        n_classes=k,
        noise=0.0,
        radial_scale=rs,
        angular_scale=a_s,
        spiral_scale=ss,
        seed=0,
        dtype=F64,
    ).get_data()
    r = x.norm(dim=1)
    # r = rs sqrt(u): (r/rs)^2 ~ U(0, 1)
    u = (r / rs) ** 2
    assert u.max().item() <= 1.0 + 1e-12
    assert abs(u.mean().item() - 0.5) < 5 / math.sqrt(12 * n)
    # angle - ss * t = 2 pi j / k + a_s * xi
    base = torch.atan2(x[:, 1], x[:, 0]) - ss * (r / rs)
    j = torch.round(torch.remainder(base, 2 * math.pi) / (2 * math.pi / k)) % k
    resid = wrap(base - 2 * math.pi * j / k)
    assert abs(resid.std().item() / a_s - 1) < 5 / math.sqrt(2 * n)
    assert abs(resid.mean().item()) < 5 * a_s / math.sqrt(n)
    counts = torch.bincount(j.long(), minlength=k)
    assert counts.max() - counts.min() <= 1


def test_grid_points_and_jitter():
    g = GridDataset(n_samples_per_dim=4, range_limit=1.5, noise=0.0, seed=0, dtype=F64).get_data()
    lin = torch.linspace(-1.5, 1.5, 4, dtype=F64)
    xx, yy = torch.meshgrid(lin, lin, indexing="ij")
    assert torch.equal(g, torch.stack([xx.flatten(), yy.flatten()], 1))
    noise = 0.05
    j = GridDataset(n_samples_per_dim=100, range_limit=1.0, noise=noise, seed=1, dtype=F64)
    lin = torch.linspace(-1, 1, 100, dtype=F64)
    xx, yy = torch.meshgrid(lin, lin, indexing="ij")
    resid = j.get_data() - torch.stack([xx.flatten(), yy.flatten()], 1)
    assert abs(resid.std().item() / noise - 1) < 5 / math.sqrt(2 * resid.numel())


def test_two_spirals_arms():
    n, turns, radius = 20001, 1.5, 3.0
    x = TwoSpiralsDataset(n, noise=0.0, n_turns=turns, radius=radius, seed=0, dtype=F64).get_data()
    r = x.norm(dim=1)
    assert r.max().item() <= radius + 1e-12
    theta = 2 * math.pi * turns * r / radius
    on_a = wrap(torch.atan2(x[:, 1], x[:, 0]) - theta).abs() < 1e-8
    on_b = wrap(torch.atan2(-x[:, 1], -x[:, 0]) - theta).abs() < 1e-8
    assert bool((on_a | on_b).all())
    assert int(on_a.sum()) == (n + 1) // 2 and int(on_b.sum()) == n // 2
    # r = R sqrt(u): mean r^2 = R^2/2
    assert abs((r**2).mean().item() / radius**2 - 0.5) < 5 / math.sqrt(12 * n)


def test_checkerboard_refuses_a_range_without_unit_cells():
    """From 2**53 on every float64 is an even integer: no proposal ever lands in a black
    cell and the rejection loop ran forever. From 2**52 on (integers only, the cells'
    interiors are gone) a half side is refused by name (2**52 itself: no hang to wait on)."""
    from torchebm.datasets import make_checkerboard

    with pytest.raises(ValueError, match="range_limit must be below 2\\*\\*52"):
        make_checkerboard(10, range_limit=2.0**52)
    pts = make_checkerboard(10, range_limit=2.0**40, noise=0.0,
                            generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # fmt: skip
    assert bool(((torch.floor(pts[:, 0]) + torch.floor(pts[:, 1])) % 2 == 1).all())
