"""The plots draw exactly the data they are given, on their own figure or a given axes."""

import os
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure

from torchebm.core import DoubleWellModel, HarmonicModel
from torchebm.interpolants import CosineInterpolant, LinearInterpolant
from torchebm.visualization import (
    plot_energy_landscape,
    plot_interpolant_paths,
    plot_interpolant_schedules,
    plot_samples,
    plot_training_curves,
    plot_trajectories,
    plot_vector_field,
)


def _scatters(ax):
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def test_landscape_builds_a_figure_without_pyplot():
    before = set(matplotlib._pylab_helpers.Gcf.figs)
    fig = plot_energy_landscape(HarmonicModel(), (-2, 2), kind="density", grid_size=20)
    assert isinstance(fig, Figure)
    assert set(matplotlib._pylab_helpers.Gcf.figs) == before  # nothing registered in pyplot
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((-2, 2)) and ax.get_ylim() == pytest.approx((-2, 2))
    assert len(fig.axes) == 2  # the plot and its colorbar


def test_landscape_draws_into_a_given_axes(tmp_path):
    fig = Figure()
    ax = fig.add_subplot()
    out = plot_energy_landscape(DoubleWellModel(), (-2, 2), ax=ax, colorbar=False, grid_size=20)
    assert out is fig and len(fig.axes) == 1 and ax.collections
    path = tmp_path / "landscape.png"
    out.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_landscape_contour_levels_span_the_energy_range():
    fig = plot_energy_landscape(HarmonicModel(k=2.0), (-1, 1), grid_size=21, levels=10)
    cs = fig.axes[0].collections[0]
    assert cs.levels[0] <= 0.0 and cs.levels[-1] >= 2.0  # E ranges over [0, 2]


def test_plot_samples_scatters_the_given_points():
    gen = torch.Generator().manual_seed(0)
    samples, data = torch.randn(50, 2, generator=gen), torch.randn(30, 2, generator=gen) + 1
    fig = plot_samples(samples, data, xlim=(-4, 4))
    ax = fig.axes[0]
    data_pts, sample_pts = (s.get_offsets() for s in _scatters(ax))
    np.testing.assert_allclose(data_pts, data.numpy(), rtol=1e-6)
    np.testing.assert_allclose(sample_pts, samples.numpy(), rtol=1e-6)
    assert ax.get_xlim() == pytest.approx((-4, 4)) and ax.get_ylim() == pytest.approx((-4, 4))


def test_plot_samples_auto_limits_contain_every_point_and_accept_numpy():
    pts = np.array([[0.0, 0.0], [10.0, 1.0], [5.0, -3.0]])
    ax = plot_samples(pts).axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 < 0 and x1 > 10 and y0 < -3 and y1 > 1


def test_plot_samples_over_a_landscape_and_validation():
    fig = plot_samples(torch.zeros(5, 2), model=HarmonicModel(), xlim=(-1, 1), grid_size=10)
    assert len(fig.axes) == 2  # plot + colorbar of the landscape
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plot_samples(torch.zeros(5, 3))
    with pytest.raises(TypeError, match="ax"):
        plot_samples(torch.zeros(5, 2), ax="left")


def test_plot_trajectories_draws_each_chain():
    traj = torch.randn(6, 40, 2, generator=torch.Generator().manual_seed(1)).cumsum(1)
    ax = plot_trajectories(traj, max_chains=4).axes[0]
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    segs = lines.get_segments()
    assert len(segs) == 4
    np.testing.assert_allclose(segs[2], traj[2].numpy(), rtol=1e-6)
    start, end = (s.get_offsets() for s in _scatters(ax))
    np.testing.assert_allclose(start, traj[:4, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(end, traj[:4, -1].numpy(), rtol=1e-6)
    single = plot_trajectories(traj[0], model=HarmonicModel(), grid_size=10)
    assert len(single.axes) == 2
    with pytest.raises(ValueError, match="trajectory"):
        plot_trajectories(torch.zeros(3, 4, 5, 2))


class _CopiedShapes(torch.Tensor):
    """Records the shape of every tensor copied with ``.to()``."""

    shapes: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.to:
            cls.shapes.append(tuple(args[0].shape))
        return super().__torch_function__(func, types, args, kwargs or {})


def test_plot_trajectories_copies_only_the_chains_it_draws():
    # the whole trajectory went to the host in float64 before max_chains was applied (5,000
    # chains x 2,000 steps: +153 MB for a picture of 20)
    traj = torch.randn(50, 30, 2, generator=torch.Generator().manual_seed(2)).cumsum(1)
    _CopiedShapes.shapes = []
    plot_trajectories(traj.as_subclass(_CopiedShapes), max_chains=4)
    assert _CopiedShapes.shapes == [(4, 30, 2)]


def test_plot_trajectories_limits():
    traj = torch.randn(3, 30, 2, generator=torch.Generator().manual_seed(2)).cumsum(1)
    ax = plot_trajectories(traj).axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    pts = traj.reshape(-1, 2)
    assert x0 < pts[:, 0].min() and pts[:, 0].max() < x1
    assert y0 < pts[:, 1].min() and pts[:, 1].max() < y1
    ax = plot_trajectories(traj, xlim=(-3, 3)).axes[0]  # ylim follows xlim
    assert ax.get_xlim() == pytest.approx((-3, 3)) and ax.get_ylim() == pytest.approx((-3, 3))
    ax = plot_trajectories(traj, ylim=(-1, 2)).axes[0]  # fitted x, given y
    assert ax.get_ylim() == pytest.approx((-1, 2)) and ax.get_xlim()[0] < pts[:, 0].min()


def test_quiver_shows_unit_directions_of_the_field():
    fig = plot_vector_field(lambda x: 3.0 * x, (-1, 1), grid_size=5)
    q = fig.axes[0].collections[0]
    u, v = np.asarray(q.U), np.asarray(q.V)
    X, Y = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5))
    norm = np.hypot(X, Y).ravel()
    keep = norm > 0
    np.testing.assert_allclose(u[keep], (X.ravel() / np.where(keep, norm, 1))[keep], atol=1e-6)
    np.testing.assert_allclose(v[keep], (Y.ravel() / np.where(keep, norm, 1))[keep], atol=1e-6)
    stream = plot_vector_field(lambda x, t: -x * t[:, None], (-1, 1), t=0.5, kind="stream")
    assert stream.axes[0].collections


def test_training_curves_plot_values_and_the_moving_average():
    fig = plot_training_curves([1.0, 1.0, 0.0, 0.0], smoothing=0.5)
    raw, smooth = fig.axes[0].get_lines()
    np.testing.assert_allclose(raw.get_ydata(), [1, 1, 0, 0])
    np.testing.assert_allclose(smooth.get_ydata(), [1.0, 1.0, 0.5, 0.25])
    many = plot_training_curves({"a": [3, 2, 1], "b": [torch.tensor(1.0), 2.0]}, logy=True)
    ax = many.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="positive"):
        plot_training_curves([1.0, 0.0], logy=True)
    with pytest.raises(ValueError, match="smoothing"):
        plot_training_curves([1.0], smoothing=1.0)


def test_interpolant_paths_follow_the_linear_interpolant():
    gen = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(5, 2, generator=gen), torch.randn(5, 2, generator=gen) + 4
    ax = plot_interpolant_paths(LinearInterpolant(), x0, x1, n_times=11).axes[0]
    (lc,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    segs = np.asarray(lc.get_segments()).reshape(5, 10, 2, 2)
    expected = (
        x0[:, None].numpy() + np.linspace(0, 1, 11)[None, :, None] * (x1 - x0)[:, None].numpy()
    )
    np.testing.assert_allclose(segs[:, :, 0], expected[:, :-1], atol=1e-6)
    np.testing.assert_allclose(segs[:, -1, 1], x1.numpy(), atol=1e-6)


def test_interpolant_schedules_plot_alpha_and_sigma():
    ax = plot_interpolant_schedules(CosineInterpolant(), n_times=5).axes[0]
    alpha, sigma = ax.get_lines()[:2]
    t = np.linspace(0, 1, 5)
    np.testing.assert_allclose(alpha.get_ydata(), np.sin(np.pi * t / 2), atol=1e-7)
    np.testing.assert_allclose(sigma.get_ydata(), np.cos(np.pi * t / 2), atol=1e-7)


def test_plots_work_headless_even_with_an_interactive_backend_configured(tmp_path):
    code = (
        "import sys, torch\n"
        "from torchebm.core import DoubleWellModel\n"
        "from torchebm.visualization import plot_samples\n"
        "fig = plot_samples(torch.randn(20, 2), model=DoubleWellModel(), xlim=(-2, 2), grid_size=10)\n"
        f"fig.savefig({str(tmp_path / 'headless.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "TkAgg"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert (tmp_path / "headless.png").stat().st_size > 1000


def test_automatic_ranges_skip_diverged_chains_and_widen_a_single_point():
    # sample() keeps NaN chains under nan_policy="warn": they made matplotlib raise "Axis
    # limits cannot be NaN or Inf"; one point gave a window 2e-7 wide
    from torchebm.visualization import plot_samples, plot_trajectories

    pts = torch.tensor([[0.0, 0.0], [1.0, 1.0], [float("nan"), 0.5], [float("inf"), 2.0]])
    with pytest.warns(RuntimeWarning, match="samples: 2 of 4 points hold NaN/inf"):
        fig = plot_samples(pts)  # they are not drawn, and the picture says nothing of them
    lo, hi = fig.axes[0].get_xlim()
    assert -1.0 < lo < 0.0 and 1.0 < hi < 2.0
    traj = torch.stack([pts[:2], pts[2:]], dim=1)  # (2 chains, 2 steps, 2)
    with pytest.warns(RuntimeWarning, match="trajectory: 2 of 4 points"):
        assert np.isfinite(plot_trajectories(traj).axes[0].get_xlim()).all()
    with pytest.warns(RuntimeWarning, match="data: 2 of 4 points"):
        plot_samples(pts[:2], data=pts)
    lo, hi = plot_samples(torch.tensor([[0.5, 0.5]])).axes[0].get_xlim()
    assert lo < 0.45 and hi > 0.55


@pytest.mark.parametrize(
    "plot, arg, name",
    [
        (plot_samples, torch.empty(0, 2), "samples"),
        (plot_trajectories, torch.empty(0, 5, 2), "trajectory"),
        (lambda x0: plot_interpolant_paths(LinearInterpolant(), x0, x0), np.empty((0, 2)), "x0"),
    ],
)
def test_empty_point_sets_are_rejected_by_name(plot, arg, name):
    # numpy's "need at least one array to concatenate" leaked out of the automatic ranges
    with pytest.raises(ValueError, match=rf"{name} must .*\(0, "):
        plot(arg)


def test_moving_average_skips_non_finite_values():
    # one NaN (a step skipped under nan_policy="skip") blanked the rest of the smoothed curve
    nan = float("nan")
    raw, smooth = plot_training_curves([1.0, nan, 0.5, 0.25], smoothing=0.5).axes[0].get_lines()
    np.testing.assert_allclose(smooth.get_ydata(), [1.0, 1.0, 0.75, 0.5])
    assert np.isnan(raw.get_ydata()[1])  # a gap in the raw curve
    _, smooth = (
        plot_training_curves([nan, float("inf"), 2.0, 0.0], smoothing=0.5).axes[0].get_lines()
    )
    np.testing.assert_allclose(smooth.get_ydata(), [nan, nan, 2.0, 1.0])


def test_schedule_plot_clips_a_singular_end_and_says_so():
    # VP's sigma_dot(1) = -5e4 stretched the y axis to [-5e4, 0] and flattened every curve
    from torchebm.interpolants import VariancePreservingInterpolant

    ax = plot_interpolant_schedules(VariancePreservingInterpolant()).axes[0]
    lo, hi = ax.get_ylim()
    assert -10.0 < lo < -3.3 and 1.9 < hi < 5.0  # sigma_dot(0.995) = -3.64, max alpha_dot 1.91
    assert ax.get_lines()[3].get_ydata()[-1] == pytest.approx(-5e4)  # drawn, off the axes
    assert any("clipped" in text.get_text() for text in ax.texts)
    regular = plot_interpolant_schedules(LinearInterpolant()).axes[0]
    assert regular.get_ylim()[0] < -1.0 < 1.0 < regular.get_ylim()[1] and not regular.texts
