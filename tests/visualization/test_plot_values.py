"""What the plots put where: axis ranges, moving averages, path colours, wide energy ranges."""

import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection

from torchebm.core import HarmonicModel
from torchebm.interpolants import LinearInterpolant, VariancePreservingInterpolant
from torchebm.visualization import (
    landscape_values,
    plot_energy_landscape,
    plot_interpolant_paths,
    plot_interpolant_schedules,
    plot_training_curves,
    plot_vector_field,
)


def test_landscape_and_vector_field_axes_are_the_given_ranges():
    # a wide, short window: the y axis must be ylim, not xlim
    ax = plot_energy_landscape(HarmonicModel(), (-3.0, 1.0), (0.5, 1.5), grid_size=9).axes[0]
    assert ax.get_xlim() == pytest.approx((-3.0, 1.0))
    assert ax.get_ylim() == pytest.approx((0.5, 1.5))
    ax = plot_vector_field(lambda x: -x, (-3.0, 1.0), (0.5, 1.5), grid_size=5).axes[0]
    assert ax.get_xlim() == pytest.approx((-3.0, 1.0))
    assert ax.get_ylim() == pytest.approx((0.5, 1.5))


def test_density_of_an_energy_spanning_thousands_of_units_is_finite_and_normalised():
    # e^{-(E - E.min())} is at most 1; shifting by anything else overflows past ~709 units
    X, Y = np.meshgrid(np.linspace(0.0, 1.0, 201), np.linspace(0.0, 2.0, 5))
    E = 2000.0 * X**2 + 5.0
    logp = landscape_values(E, X, Y, "log_density")
    assert np.isfinite(logp).all()
    np.testing.assert_allclose(logp + E, (logp + E)[0, 0], atol=1e-9)  # log p = -E - log Z
    p = landscape_values(E, X, Y, "density")
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz
    mass = trapezoid(trapezoid(p, X[0], axis=1), Y[:, 0])
    assert mass == pytest.approx(1.0, rel=1e-12)


def test_moving_average_is_the_exponential_recursion_at_each_step():
    y = np.random.default_rng(0).normal(size=30).cumsum()
    w = 0.9
    raw, smooth = plot_training_curves(list(y), smoothing=w).axes[0].get_lines()
    want, acc = [], y[0]
    for v in y:  # acc_1 = y_1, acc_i = w acc_{i-1} + (1 - w) y_i
        acc = w * acc + (1 - w) * v
        want.append(acc)
    np.testing.assert_allclose(smooth.get_ydata(), want, rtol=1e-12)
    # plotted against the step number, counted from 1
    np.testing.assert_array_equal(raw.get_xdata(), np.arange(1, 31))
    np.testing.assert_array_equal(smooth.get_xdata(), np.arange(1, 31))


def test_interpolant_path_segments_are_coloured_by_their_mid_time():
    x0, x1 = torch.zeros(3, 2), torch.ones(3, 2)
    ax = plot_interpolant_paths(LinearInterpolant(), x0, x1, n_times=5).axes[0]
    (lc,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    # each of the 4 segments of [0, 1] carries the time of its midpoint, path after path
    np.testing.assert_allclose(lc.get_array(), np.tile([0.125, 0.375, 0.625, 0.875], 3))
    assert lc.get_clim() == (0.0, 1.0)


def test_schedule_plot_clips_to_the_widened_percentile_range():
    # documented rule: values beyond the 1st-99th percentile range widened by half its
    # width on each side are cut off; the axis shows that range plus a 5% margin
    ax = plot_interpolant_schedules(VariancePreservingInterpolant()).axes[0]
    vals = np.concatenate([line.get_ydata() for line in ax.get_lines()[:4]])
    p1, p99 = np.percentile(vals, [1.0, 99.0])
    lo = max(p1 - 0.5 * (p99 - p1), vals.min())
    hi = min(p99 + 0.5 * (p99 - p1), vals.max())
    y0, y1 = ax.get_ylim()
    assert vals.min() < y0  # the singular end is clipped
    pad = 0.05 * (hi - lo)
    assert (y0, y1) == pytest.approx((lo - pad, hi + pad), rel=1e-9)


def test_quiver_draws_a_zero_arrow_where_the_field_vanishes():
    # unit directions elsewhere; at the fixed point of -x the arrow is (0, 0), not NaN
    q = plot_vector_field(lambda x: -x, (-1.0, 1.0), grid_size=5).axes[0].collections[0]
    u, v = np.asarray(q.U), np.asarray(q.V)
    assert np.isfinite(u).all() and np.isfinite(v).all()
    assert (u[12], v[12]) == (0.0, 0.0)  # the grid's centre point (0, 0)
    np.testing.assert_allclose(np.hypot(np.delete(u, 12), np.delete(v, 12)), 1.0, rtol=1e-12)
