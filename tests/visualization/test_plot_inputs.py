"""The inputs the plots accept since review: `BaseTrainer.train`'s history, interpolant
names, checked grid shapes and hard walls (+inf energies); and the ones they refuse, with
errors that name the argument and what is accepted."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection

from torchebm.core.errors import ConfigurationError, ShapeError
from torchebm.interpolants import CosineInterpolant, VariancePreservingInterpolant
from torchebm.losses import BaseTrainer
from torchebm.visualization import (
    energy_grid,
    landscape_values,
    plot_energy_landscape,
    plot_interpolant_paths,
    plot_interpolant_schedules,
    plot_training_curves,
)


# --------------------------------------------------------------------------- training curves
def _lines(fig):
    return {line.get_label(): line for line in fig.axes[0].get_lines()}


def test_the_history_that_base_trainer_train_returns_is_plotted_per_split_and_metric():
    model = torch.nn.Linear(2, 1)
    trainer = BaseTrainer(
        model, torch.optim.SGD(model.parameters(), lr=0.1), lambda x: model(x).square().mean()
    )
    loader = torch.utils.data.DataLoader(torch.randn(32, 2), batch_size=8)
    history = trainer.train(loader, 3, validate_fn=lambda t: {"nll": 1.0 + t.epoch})
    lines = _lines(plot_training_curves(history))  # was: float() argument ... not 'dict'
    assert set(lines) == {f"train/{k}" for k in history["train"][0]} | {"val/nll"}
    np.testing.assert_allclose(
        lines["train/loss"].get_ydata(), [m["loss"] for m in history["train"]]
    )
    np.testing.assert_allclose(lines["val/nll"].get_ydata(), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(lines["val/nll"].get_xdata(), [1, 2, 3])


def test_per_epoch_dicts_skip_empty_splits_and_leave_gaps_for_missing_metrics():
    history = {"train": [{"loss": 2.0}, {"loss": 1.0, "acc": 0.5}], "val": []}
    fig = plot_training_curves(history, xlabel="epoch")
    lines = _lines(fig)
    assert list(lines) == ["train/loss", "train/acc"]
    np.testing.assert_array_equal(lines["train/acc"].get_ydata(), [np.nan, 0.5])
    assert fig.axes[0].get_xlabel() == "epoch"
    # a bare list of per-epoch dicts (history["train"]) works too
    lines = _lines(plot_training_curves(history["train"]))
    assert list(lines) == ["loss", "acc"]


@pytest.mark.parametrize(
    "history, where",
    [
        ({"train": [{"loss": 1.0}], "lr": [0.1]}, "history['train'][0]"),
        ({"train": [{"loss": "low"}]}, "history['train/loss'][0]"),
        ({"loss": 3.0}, "history['loss']"),
        ([1.0, {"loss": 1.0}], "history['loss'][1]"),
    ],
)
def test_a_history_of_no_accepted_form_is_a_type_error_that_lists_the_forms(history, where):
    with pytest.raises(TypeError) as info:
        plot_training_curves(history)
    text = str(info.value)
    assert where in text and "BaseTrainer.train" in text and "sequence of numbers" in text


def test_a_history_without_epochs_is_refused():
    with pytest.raises(ConfigurationError):
        plot_training_curves({})


# --------------------------------------------------------------------------- interpolants
def _segments(fig):
    (lc,) = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    return np.asarray(lc.get_segments())


def test_interpolants_are_accepted_by_registered_name():
    x0, x1 = torch.randn(5, 2), torch.randn(5, 2)
    by_name = plot_interpolant_paths("cosine", x0, x1, n_times=7)  # was AttributeError
    np.testing.assert_allclose(
        _segments(by_name),
        _segments(plot_interpolant_paths(CosineInterpolant(), x0, x1, n_times=7)),
    )
    fig = plot_interpolant_schedules("vp", n_times=11)
    ref = plot_interpolant_schedules(VariancePreservingInterpolant(), n_times=11)
    for a, b in zip(fig.axes[0].get_lines(), ref.axes[0].get_lines()):
        np.testing.assert_array_equal(a.get_ydata(), b.get_ydata())
    assert fig.axes[0].get_title() == "VariancePreservingInterpolant"


@pytest.mark.parametrize("bad", [3, None, torch.zeros(2)])
def test_other_interpolant_types_are_a_type_error_naming_the_accepted_ones(bad):
    with pytest.raises(
        TypeError,
        match=r"registered name \(.*'cosine'.*\), a BaseInterpolant .*got (int|NoneType|Tensor)",
    ):
        plot_interpolant_schedules(bad)
    with pytest.raises(TypeError, match="plot_interpolant_paths: interpolant must be"):
        plot_interpolant_paths(bad, torch.zeros(2, 2), torch.ones(2, 2))
    with pytest.raises(ConfigurationError, match="cosin"):
        plot_interpolant_schedules("cosin")


# --------------------------------------------------------------------------- landscape grids
def test_grids_of_different_shapes_are_a_shape_error_naming_them():
    X, Y, E = energy_grid(lambda x: (x**2).sum(-1), (-1, 1), grid_size=5)
    with pytest.raises(ShapeError, match=r"E \(5, 3\), X \(5, 5\), Y \(5, 5\)"):
        landscape_values(E[:, :3], X, Y, "density")  # was numpy's matmul ValueError
    with pytest.raises(ShapeError, match=r"Y must be a 2-D grid .*got shape \(5,\)"):
        landscape_values(E, X, Y[:, 0], "energy")


def _walled(x):
    """A harmonic well cut by a hard wall at x_1 > 0.5 (density 0 there)."""
    e = 0.5 * (x**2).sum(-1)
    return torch.where(x[:, 0] > 0.5, torch.full_like(e, math.inf), e)


def test_infinite_energies_are_density_zero_and_blank_in_the_energy_views():
    X, Y, E = energy_grid(_walled, (-3, 3), grid_size=61)
    wall = np.isinf(E)
    assert wall.any()
    p = landscape_values(E, X, Y, "density")  # was: "cannot plot them"
    assert not isinstance(p, np.ma.MaskedArray) and (p[wall] == 0).all()
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz
    assert trapezoid(trapezoid(p, X[0], axis=1), Y[:, 0]) == pytest.approx(1.0, rel=1e-12)
    for kind, clip in [
        ("energy", None),
        ("energy", 2.0),
        ("log_density", None),
        ("log_density", 3.0),
    ]:
        v = landscape_values(E, X, Y, kind, clip)
        assert isinstance(v, np.ma.MaskedArray)
        np.testing.assert_array_equal(v.mask, wall)
        assert np.isfinite(v.compressed()).all()
    e = landscape_values(E, X, Y, "energy")
    np.testing.assert_array_equal(e.compressed(), E[~wall])
    for kind in ("energy", "density", "log_density"):
        ax = plot_energy_landscape(_walled, grid_size=41, kind=kind).axes[0]
        (cs,) = [c for c in ax.collections if hasattr(c, "levels")]
        assert np.isfinite(cs.levels).all()


def test_nan_and_negative_infinite_energies_are_still_refused():
    X, Y = np.meshgrid(np.linspace(0, 1, 3), np.linspace(0, 1, 3))
    for bad in (np.nan, -np.inf):
        E = np.zeros((3, 3))
        E[1, 1] = bad
        with pytest.raises(ConfigurationError, match="1 non-finite"):
            landscape_values(E, X, Y, "density")
    with pytest.raises(ConfigurationError, match=r"every energy .* \+inf"):
        landscape_values(np.full((3, 3), np.inf), X, Y, "energy")
