"""Mass that the grid's coarse search steps over is found (a ridge crossing the box) or
reported (a mode narrower than the spacing, a box cutting the mass), never silently lost."""

import math
import warnings

import pytest
import torch

from torchebm.core import GaussianModel, RosenbrockModel
from torchebm.metrics import grid_log_partition, grid_nll

F64 = torch.float64


def _rosenbrock_log_z(b: float) -> float:
    # int e^{-(a-x)^2} dx * int e^{-b (y - x^2)^2} dy = sqrt(pi) * sqrt(pi / b)
    return math.log(math.pi) - 0.5 * math.log(b)


def test_a_narrow_ridge_crossing_the_searched_box_is_followed_out_of_it():
    # the ridge y = x^2 (width 0.02 in y) crosses y = 8 between the coarse grid's points: the
    # box stopped there with the boundary at exp(-0.73) of the peak and log Z 0.129 too small
    # (an error estimate of 5e-8 at n_points=2049, no warning)
    model = RosenbrockModel(a=2.0, b=1000.0, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = grid_log_partition(model, n_points=2049)
    assert r.tail < -20 and r.extent[1][1] > 40  # the ridge reaches y = (2 + 4.5)^2 at -20
    assert abs(r.log_z - _rosenbrock_log_z(1000.0)) < 1e-4 < r.error + 1e-4


def test_an_unresolved_ridge_warns_instead_of_reporting_a_small_error():
    model = RosenbrockModel(a=2.0, b=1000.0, dtype=F64)
    with pytest.warns(RuntimeWarning, match="does not\nresolve|does not resolve"):
        r = grid_log_partition(model)  # 513 points over a box of height 33: spacing 0.06 > 0.02
    assert abs(r.log_z - _rosenbrock_log_z(1000.0)) < r.error


def test_mass_beyond_the_searched_box_warns_and_a_given_box_is_the_domain():
    # without room to grow (max_doublings=1) the ridge's box keeps its boundary mass: warned
    model = RosenbrockModel(a=2.0, b=1000.0, dtype=F64)
    with pytest.warns(RuntimeWarning, match=r"mass outside the box is not counted"):
        grid_log_partition(model, n_points=2049, max_doublings=1)
    # a given extent is the density's domain (exp(-E)/Z on the box): its tail is reported
    gauss = GaussianModel(torch.zeros(2), torch.eye(2), dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = grid_log_partition(gauss, extent=((-2.0, 2.0), (-4.0, 4.0)))
    assert r.tail == pytest.approx(-2.0, abs=1e-9)  # -E at x = 2 relative to the peak
    inside = math.log(2 * math.pi * (math.erf(2 / math.sqrt(2)) * math.erf(4 / math.sqrt(2))))
    assert abs(r.log_z - inside) < r.error < 1e-5  # h^2 error: the density is cut at the edges


class _NarrowMixture(torch.nn.Module):
    """0.5 N(0, 3^2 I) + 0.5 N(c, 0.01^2 I), normalised: log Z = 0."""

    C = (1.1, 0.37)

    def forward(self, x):
        wide = -0.5 * x.square().sum(1) / 9 - math.log(2 * math.pi * 9)
        c = torch.tensor(self.C, dtype=x.dtype)
        narrow = -0.5 * (x - c).square().sum(1) / 1e-4 - math.log(2 * math.pi * 1e-4)
        return -torch.logsumexp(torch.stack([wide, narrow], 1) + math.log(0.5), 1)


def test_data_in_a_mode_the_grid_stepped_over_is_reported_by_grid_nll():
    gen = torch.Generator().manual_seed(0)
    n = 2000
    narrow = torch.rand(n, generator=gen) < 0.5
    wide = 3 * torch.randn(n, 2, generator=gen, dtype=F64)
    peak = torch.tensor(_NarrowMixture.C, dtype=F64) + 0.01 * torch.randn(
        n, 2, generator=gen, dtype=F64
    )
    x = torch.where(narrow[:, None], peak, wide)
    with pytest.warns(RuntimeWarning, match=rf"{int(narrow.sum())} of {n} data points"):
        grid_nll(_NarrowMixture(), x)
    # a resolved density with data in its bulk and tails: no warning
    model = GaussianModel(torch.zeros(2), torch.eye(2), dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = grid_nll(model, torch.randn(5000, 2, generator=gen, dtype=F64))
    assert r.log_z.peak == pytest.approx(-0.0, abs=1e-12)


def test_grid_nll_of_data_outside_a_given_box_warns():
    # a box of +-1.5 around N(0, I) data: 24% of the points outside it, NLL 2.54 for 2.83
    gauss = GaussianModel(torch.zeros(2), torch.eye(2), dtype=F64)
    x = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    with pytest.warns(RuntimeWarning, match=r"data points lie outside the box"):
        grid_nll(gauss, x, extent=((-1.5, 1.5), (-1.5, 1.5)))


def test_an_infinite_density_on_a_grid_point_is_refused_by_name():
    # E = log|x| + |x|^2 / 2 is integrable (log Z = log(2 pi sqrt(pi / 2))) but -inf at the
    # origin: with a given box the node (0, 0) made log Z = inf with an error of NaN and no
    # warning; without one the message said "no finite energy"
    def model(x):
        return torch.log(x.norm(dim=1)) + 0.5 * (x**2).sum(1)

    for kwargs in ({"extent": ((-8.0, 8.0), (-8.0, 8.0))}, {}):
        with pytest.raises(FloatingPointError, match=r"infinite density.*\(0, 0\).*center="):
            grid_log_partition(model, dtype=F64, **kwargs)
    exact = math.log(2 * math.pi * math.sqrt(math.pi / 2))
    with pytest.warns(RuntimeWarning, match="error estimate"):  # off the node: resolved badly
        r = grid_log_partition(model, dtype=F64, center=(0.013, 0.007))
    assert abs(r.log_z - exact) < 3 * r.error


def test_a_given_box_without_a_finite_energy_is_refused_by_name():
    # log Z = -inf with an error estimate of NaN, and a warning to raise n_points
    def nowhere(x):
        return torch.full((len(x),), math.inf, dtype=x.dtype)

    with pytest.raises(FloatingPointError, match="no finite energy"):
        grid_log_partition(nowhere, dtype=F64, extent=((-1.0, 1.0), (-1.0, 1.0)))
