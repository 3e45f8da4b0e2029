"""Densities on grids other than energy_grid's, NaN vector fields, the training-curve and
landscape options (independent references: the trapezoidal rule on the true nodes, the
closed-form normalised Gaussian)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from torchebm.core.errors import ConfigurationError
from torchebm.visualization import (
    landscape_values,
    plot_samples,
    plot_training_curves,
    plot_vector_field,
    vector_field_grid,
)


def test_a_density_on_an_unevenly_spaced_grid_integrates_to_one():
    # nodes 3 sign(u) u^2 (dense at 0): the even-spacing rule gave a total mass of 0.4497
    u = np.linspace(-1, 1, 81)
    nodes = 3 * np.sign(u) * u**2
    X, Y = np.meshgrid(nodes, nodes)
    E = 0.5 * (X**2 + Y**2)
    p = landscape_values(E, X, Y, "density")

    def trapezoid(y, x):  # along the last axis (numpy < 2 has no np.trapezoid)
        return ((y[..., 1:] + y[..., :-1]) / 2 * np.diff(x)).sum(-1)

    mass = trapezoid(trapezoid(p, nodes), nodes)
    assert mass == pytest.approx(1.0, abs=1e-12)
    # the truncated standard Gaussian on [-3, 3]^2 at the centre, within the rule's error
    z = math.erf(3 / math.sqrt(2)) ** 2 * 2 * math.pi
    assert p[40, 40] == pytest.approx(1 / z, rel=2e-3)


@pytest.mark.parametrize("kind", ["density", "log_density"])
def test_an_ij_or_descending_grid_is_refused_for_a_density(kind):
    xs = np.linspace(-3, 3, 41)
    X, Y = np.meshgrid(xs, xs, indexing="ij")  # gave inf everywhere, in silence
    E = 0.5 * (X**2 + Y**2)
    with pytest.raises(ConfigurationError, match="'xy' meshgrid"):
        landscape_values(E + X, X, Y, kind)
    X, Y = np.meshgrid(xs, xs)
    flipped = landscape_values(E[:, ::-1], X[:, ::-1], Y, kind)  # a descending x: NaN before
    assert np.array_equal(flipped, landscape_values(E, X, Y, kind)[:, ::-1])
    X[3, 3] = 0.0  # not a meshgrid
    with pytest.raises(ConfigurationError, match="'xy' meshgrid"):
        landscape_values(E, X, Y, kind)


def test_non_finite_vectors_warn_with_their_number_and_all_of_them_raise():
    def half_nan(x):
        return torch.where(x[:, :1] > 0, x * float("nan"), -x)

    with pytest.warns(RuntimeWarning, match="NaN/inf at 18 of 36 grid points"):
        vector_field_grid(half_nan, (-1, 1), grid_size=6)
    with pytest.raises(ConfigurationError, match="every one of the 36 grid points"):
        plot_vector_field(lambda x: x * float("nan"), (-1, 1), grid_size=6)
    with pytest.raises(TypeError, match="t must be a finite number"):
        vector_field_grid(lambda x, t: -x, (-1, 1), grid_size=3, t="a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vector_field_grid(lambda x: -x, (-1, 1), grid_size=3)


def test_training_curves_take_one_element_arrays_and_name_bad_input():
    losses = [torch.tensor(v) for v in (3.0, 2.0, 1.5)]
    fig = plot_training_curves([t.numpy() for t in losses])  # 0-d arrays: a TypeError before
    assert np.allclose(fig.axes[0].lines[0].get_ydata(), [3.0, 2.0, 1.5])
    plot_training_curves(np.array([[3.0], [2.0]]))
    with pytest.raises(TypeError, match="sequence of numbers"):
        plot_training_curves(torch.tensor(1.0))  # "iteration over a 0-d tensor"
    with pytest.raises(TypeError, match="smoothing must be a number"):
        plot_training_curves([1.0, 2.0], smoothing="a")


@pytest.mark.parametrize(
    "kw,words",
    [({"kind": "bogus"}, "kind"), ({"clip": -1}, "clip"), ({"grid_size": 0}, "grid_size")],
)
def test_landscape_options_are_checked_without_a_model_too(kw, words):
    with pytest.raises((ValueError, TypeError), match=words):
        plot_samples(torch.randn(10, 2), **kw)
