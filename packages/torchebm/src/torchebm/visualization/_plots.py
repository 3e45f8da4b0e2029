r"""Matplotlib plots of energies, samples, trajectories, vector fields, curves and interpolants.

Every function draws with the object-oriented matplotlib API only: without ``ax`` it builds
a `matplotlib.figure.Figure` directly (no ``pyplot``, no GUI backend, nothing kept in
pyplot's figure registry), so it is safe on headless machines and in loops. With ``ax`` it
draws into that axes. Either way it returns the figure (``fig.savefig(path)`` writes it).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from torchebm.core._module import warn_user
from torchebm.core.errors import (
    ConfigurationError,
    ShapeError,
    check_in,
    check_int,
    check_positive,
    check_probability,
)
from torchebm.visualization._grid import (
    check_limits,
    energy_grid,
    to_numpy_2d,
    vector_field_grid,
)

__all__ = [
    "LANDSCAPE_KINDS",
    "landscape_values",
    "plot_energy_landscape",
    "plot_samples",
    "plot_trajectories",
    "plot_vector_field",
    "plot_training_curves",
    "plot_interpolant_paths",
    "plot_interpolant_schedules",
]

#: Accepted ``kind`` values of `plot_energy_landscape`.
LANDSCAPE_KINDS = ("energy", "density", "log_density")

_DATA_STYLE: dict[str, Any] = {"c": "white", "edgecolors": "black", "linewidths": 0.3}
_SAMPLE_STYLE: dict[str, Any] = {"c": "tab:red", "edgecolors": "darkred", "linewidths": 0.3}


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        new = Figure(figsize=figsize, layout="constrained")
        return new, new.add_subplot()
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    owner: Any = ax.figure
    for _ in range(8):  # an axes of a SubFigure: walk up to the root Figure
        if isinstance(owner, Figure):
            return owner, ax
        owner = getattr(owner, "figure", None)
    raise TypeError("ax must belong to a matplotlib Figure")


def _finish_plane(
    ax: Axes,
    xlim: Sequence[float],
    ylim: Sequence[float],
    title: str | None,
    *,
    labels: bool = True,
) -> None:
    """Ranges, equal aspect, axis labels ``x_1``/``x_2`` (``labels``) and title of a 2D plot."""
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal", adjustable="box")
    if labels:
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    if title is not None:
        ax.set_title(title)


def landscape_values(
    E: np.ndarray, X: np.ndarray, Y: np.ndarray, kind: str, clip: float | None = None
) -> np.ndarray:
    r"""Turn an energy grid into what [`plot_energy_landscape`][torchebm.visualization.plot_energy_landscape] shows.

    ``"energy"`` returns ``E``; ``"density"`` the normalised density
    $p = e^{-E} / Z$ with $Z$ the trapezoidal-rule integral of $e^{-E}$ over the
    grid's rectangle (so ``p`` integrates to 1 over the plotted window, up to the
    rule's $O(h^2)$ error, none when $e^{-E}$ is bilinear there, a constant energy
    included; the nodes may be unevenly spaced); ``"log_density"`` $\log p$. Computed
    stably by subtracting ``E.min()`` first.

    Learned energies often grow by hundreds of units away from the data, which flattens
    every colour scale; ``clip`` keeps only the interesting range: energies above
    ``E.min() + clip`` (for ``"energy"``) or log densities below ``max - clip`` (for
    ``"log_density"``) are set to that bound. It does not apply to ``"density"``.

    Energies of ``+inf`` (hard walls: outside the support) have density 0; they are left
    out of ``E.min()`` and of the colour range, and in the ``"energy"`` and
    ``"log_density"`` views (where they have no finite value) they are masked: the result
    is then a `numpy.ma.MaskedArray` whose masked cells a contour plot leaves blank. NaN and
    ``-inf`` energies are refused.

    Args:
        E: Energies ``(ny, nx)``, ``nx, ny >= 2``, finite or ``+inf``.
        X: Grid x coordinates ``(ny, nx)`` (``"xy"`` meshgrid).
        Y: Grid y coordinates ``(ny, nx)``.
        kind: One of `LANDSCAPE_KINDS`.
        clip: Range of energy (or log density) shown, ``> 0``; ``None`` shows everything.

    Returns:
        Array of the same shape as ``E`` (masked at ``+inf`` energies, except for
        ``"density"``, which is 0 there).

    Raises:
        ShapeError: ``E``, ``X``, ``Y`` are not 2-D grids of one shape (``energy_grid``'s).
        ConfigurationError: NaN or ``-inf`` energies, every energy ``+inf``, a bad ``kind``
            or ``clip``; for a density, ``X``, ``Y`` not an ``"xy"`` meshgrid with strictly
            monotone coordinates.

    Example:
        >>> X, Y = np.meshgrid(np.linspace(0, 1, 3), np.linspace(0, 1, 3))
        >>> E = np.where(X > 0.6, np.inf, 0.0)  # a wall at x = 1
        >>> landscape_values(E, X, Y, "density")[0].round(3).tolist()
        [1.333, 1.333, 0.0]
    """
    check_in("kind", kind, LANDSCAPE_KINDS)
    _check_grids(E, X, Y)
    if kind != "energy":
        _check_meshgrid(np.asarray(X), np.asarray(Y))
    wall = np.isposinf(E)
    bad = int(np.isnan(E).sum() + np.isneginf(E).sum())
    if bad:
        raise ConfigurationError(
            f"the model returned {bad} non-finite energies on the grid ({int(np.isnan(E).sum())} "
            f"NaN, {int(np.isneginf(E).sum())} -inf); cannot plot them (+inf energies, "
            "density 0, are accepted)"
        )
    if wall.all():
        raise ConfigurationError(
            "every energy on the grid is +inf (density 0 everywhere); nothing to plot"
        )
    if clip is not None:
        clip = check_positive("clip", clip)
    e_min = E[~wall].min()
    if kind == "energy":
        out = E if clip is None else np.minimum(E, e_min + clip)
        return np.ma.masked_array(out, mask=wall) if wall.any() else out
    shifted = -(E - e_min)  # -inf on the walls: exp gives their density 0
    log_z = np.log(_trapezoid_weights(X[0, :]) @ np.exp(shifted).T @ _trapezoid_weights(Y[:, 0]))
    log_p = shifted - log_z
    if kind == "log_density":
        out = log_p if clip is None else np.maximum(log_p, log_p.max() - clip)
        return np.ma.masked_array(out, mask=wall) if wall.any() else out
    return np.exp(log_p)


def _check_grids(E: Any, X: Any, Y: Any) -> None:
    """`ShapeError` unless ``E``, ``X``, ``Y`` are 2-D arrays of one shape, >= 2 per axis."""
    shapes = {name: np.shape(a) for name, a in (("E", E), ("X", X), ("Y", Y))}
    for name, shape in shapes.items():
        if len(shape) != 2 or min(shape) < 2:
            raise ShapeError(
                f"{name} must be a 2-D grid (ny, nx) with nx, ny >= 2 (as energy_grid returns), "
                f"got shape {shape}"
            )
    if not shapes["E"] == shapes["X"] == shapes["Y"]:
        raise ShapeError(
            "E, X and Y must have one shape (ny, nx) (as energy_grid returns), got "
            + ", ".join(f"{k} {v}" for k, v in shapes.items())
        )


def _trapezoid_weights(nodes: np.ndarray) -> np.ndarray:
    """Trapezoidal-rule weights of strictly monotone ``nodes`` (any spacing): half of each
    adjacent interval's length."""
    gaps = np.abs(np.diff(nodes)) / 2
    w = np.zeros(nodes.shape)
    w[:-1] += gaps
    w[1:] += gaps
    return w


def _check_meshgrid(X: np.ndarray, Y: np.ndarray) -> None:
    """``ConfigurationError`` unless ``X``, ``Y`` are an ``"xy"`` meshgrid (x along rows, y
    down columns) with strictly monotone coordinates: the density's integral reads the
    nodes ``X[0]`` and ``Y[:, 0]`` (an ``"ij"`` grid gave inf, a descending axis NaN)."""
    x, y = X[0], Y[:, 0]
    xy = bool(np.all(X == x[None, :]) and np.all(Y == y[:, None]))
    monotone = all(np.all(d > 0) or np.all(d < 0) for d in (np.diff(x), np.diff(y)))
    if not (xy and monotone):
        raise ConfigurationError(
            "X and Y must be an 'xy' meshgrid with strictly increasing or decreasing "
            "coordinates (np.meshgrid(xs, ys), as energy_grid returns) for a density; got "
            + ("an 'ij' or irregular grid" if not xy else "coordinates that repeat or turn")
        )


_KIND_LABEL = {
    "energy": "energy $E(x)$",
    "density": r"density $e^{-E(x)}/Z$",
    "log_density": r"$\log p(x) = -E(x) - \log Z$",
}


def plot_energy_landscape(
    model: Callable[..., torch.Tensor],
    xlim: Sequence[float] = (-3.0, 3.0),
    ylim: Sequence[float] | None = None,
    grid_size: int = 100,
    *,
    kind: str = "energy",
    clip: float | None = None,
    ax: Axes | None = None,
    levels: int = 50,
    cmap: str = "viridis",
    colorbar: bool = True,
    title: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Figure:
    r"""Filled contour plot of a 2-D energy $E(x)$ or of its density $e^{-E}/Z$.

    An energy of ``+inf`` (a hard wall) is density 0; the ``"energy"`` and
    ``"log_density"`` views leave its cells blank (see
    [`landscape_values`][torchebm.visualization.landscape_values]).

    Args:
        model: Energy model ``(B, 2) -> (B,)``.
        xlim: Range of the first coordinate.
        ylim: Range of the second coordinate (default: ``xlim``).
        grid_size: Grid points per axis.
        kind: ``"energy"``, ``"density"`` (normalised over the window) or ``"log_density"``.
        clip: Show only this range of energy / log density (see [`landscape_values`][torchebm.visualization.landscape_values]).
        ax: Axes to draw into (default: a new figure).
        levels: Number of contour levels.
        cmap: Matplotlib colormap name.
        colorbar: Add a colorbar labelled with what is shown.
        title: Axes title.
        model_kwargs: Conditioning forwarded to the model.

    Returns:
        The figure holding the plot.

    Example:
        >>> from torchebm.core import DoubleWellModel
        >>> fig = plot_energy_landscape(DoubleWellModel(), (-2, 2), kind="density")
        >>> fig.savefig("double_well.png")  # doctest: +SKIP
    """
    kind = check_in("kind", kind, LANDSCAPE_KINDS)
    levels = check_int("levels", levels, minimum=2)
    X, Y, E = energy_grid(model, xlim, ylim, grid_size, model_kwargs=model_kwargs)
    Z = landscape_values(E, X, Y, kind, clip)
    fig, ax = _figure_and_axes(ax, (6.0, 5.0))
    cs = ax.contourf(X, Y, Z, levels=levels, cmap=cmap)
    if colorbar:
        fig.colorbar(cs, ax=ax, label=_KIND_LABEL[kind])
    _finish_plane(ax, (X[0, 0], X[0, -1]), (Y[0, 0], Y[-1, 0]), title)
    return fig


def _points(name: str, x: Any) -> np.ndarray:
    """`to_numpy_2d` for points that are plotted and fitted: at least one is required."""
    arr = to_numpy_2d(name, x)
    if not len(arr):
        raise ShapeError(f"{name} must hold at least one point (N >= 1), got shape {arr.shape}")
    return _warn_non_finite(name, arr)


def _warn_non_finite(name: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` `(N, 2)`; one `RuntimeWarning` naming how many points are NaN/inf (matplotlib
    leaves them out: diverged chains would vanish from the picture without a word)."""
    bad = int((~np.isfinite(arr).all(axis=1)).sum())
    if bad:
        warn_user(
            f"{name}: {bad} of {len(arr)} points hold NaN/inf and are not drawn (diverged "
            "chains?); the axis limits fit the finite points",
            RuntimeWarning,
        )
    return arr


def _auto_limits(
    *arrays: np.ndarray | None, margin: float = 0.1
) -> tuple[tuple[float, float], tuple[float, float]]:
    pts = np.concatenate([a for a in arrays if a is not None and len(a)], axis=0)
    pts = pts[np.isfinite(pts).all(axis=1)]  # diverged chains (NaN/inf) are not drawn
    if not len(pts):
        pts = np.array([[0.0, 0.0]])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)  # a single point: a unit window around it
    lo, hi = lo - margin * span, hi + margin * span
    # one common range keeps the aspect ratio honest
    c, half = (lo + hi) / 2, (hi - lo).max() / 2
    return (float(c[0] - half), float(c[0] + half)), (float(c[1] - half), float(c[1] + half))


def _points_canvas(
    points: tuple[np.ndarray | None, ...],
    xlim: Sequence[float] | None,
    ylim: Sequence[float] | None,
    ax: Axes | None,
    model: Callable[..., torch.Tensor] | None,
    landscape: dict[str, Any],
) -> tuple[Figure, Axes, tuple[float, float], tuple[float, float]]:
    """Figure, axes and plot ranges for 2D points, with ``model``'s landscape underneath.

    Ranges: ``xlim`` given -> ``ylim`` defaults to it; else both fitted to ``points``
    (``ylim`` still wins when given). ``landscape`` holds the keywords of
    [`plot_energy_landscape`][torchebm.visualization.plot_energy_landscape] (``grid_size``, ``kind``, ``clip``, ``model_kwargs``),
    checked without a model too (a bad one was accepted there and ignored).
    """
    check_in("kind", landscape["kind"], LANDSCAPE_KINDS)
    check_int("grid_size", landscape["grid_size"], minimum=2)
    if landscape["clip"] is not None:
        check_positive("clip", landscape["clip"])
    if xlim is None:
        xlim_, auto_y = _auto_limits(*points)
        ylim_ = check_limits("ylim", ylim) if ylim is not None else auto_y
    else:
        xlim_ = check_limits("xlim", xlim)
        ylim_ = check_limits("ylim", ylim) if ylim is not None else xlim_
    fig, ax = _figure_and_axes(ax, (6.0, 5.0) if model is not None else (5.0, 5.0))
    if model is not None:
        plot_energy_landscape(model, xlim_, ylim_, ax=ax, **landscape)
    return fig, ax, xlim_, ylim_


def plot_samples(
    samples: Any,
    data: Any = None,
    *,
    model: Callable[..., torch.Tensor] | None = None,
    ax: Axes | None = None,
    xlim: Sequence[float] | None = None,
    ylim: Sequence[float] | None = None,
    kind: str = "density",
    clip: float | None = None,
    grid_size: int = 100,
    sample_label: str = "model samples",
    data_label: str = "data",
    s: float = 6.0,
    alpha: float = 0.6,
    title: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Figure:
    r"""Scatter of 2-D samples, optionally over data points and the model's landscape.

    Data are drawn as white dots with a black edge, samples as red dots, both above the
    landscape when ``model`` is given.

    Args:
        samples: Points ``(N, 2)`` (tensor or array); NaN/inf rows (diverged chains) are not
            drawn and warn (``RuntimeWarning``), as they do in ``data`` and trajectories.
        data: Reference points ``(M, 2)`` drawn underneath (optional).
        model: Energy model whose landscape is drawn first (optional).
        ax: Axes to draw into (default: a new figure).
        xlim: Plot range of the first coordinate (default: fitted to the points).
        ylim: Plot range of the second coordinate (default: fitted to the points, or
            ``xlim`` when only that is given).
        kind: Landscape kind (see [`plot_energy_landscape`][torchebm.visualization.plot_energy_landscape]).
        clip: Landscape range shown (see [`landscape_values`][torchebm.visualization.landscape_values]).
        grid_size: Landscape grid points per axis.
        sample_label: Legend label of the samples.
        data_label: Legend label of the data.
        s: Marker size.
        alpha: Marker opacity.
        title: Axes title.
        model_kwargs: Conditioning forwarded to the model.

    Returns:
        The figure holding the plot.

    Example:
        >>> import torch
        >>> fig = plot_samples(torch.randn(100, 2), data=torch.randn(100, 2) + 1)
    """
    pts = _points("samples", samples)
    ref = _warn_non_finite("data", to_numpy_2d("data", data)) if data is not None else None
    landscape = dict(grid_size=grid_size, kind=kind, clip=clip, model_kwargs=model_kwargs)
    fig, ax, xlim_, ylim_ = _points_canvas((pts, ref), xlim, ylim, ax, model, landscape)
    if ref is not None:
        ax.scatter(ref[:, 0], ref[:, 1], s=s, alpha=alpha, label=data_label, **_DATA_STYLE)
    ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=alpha, label=sample_label, **_SAMPLE_STYLE)
    ax.legend(loc="upper right", fontsize="small", markerscale=2.0)
    _finish_plane(ax, xlim_, ylim_, title)
    return fig


def plot_trajectories(
    trajectory: Any,
    model: Callable[..., torch.Tensor] | None = None,
    *,
    ax: Axes | None = None,
    max_chains: int = 20,
    xlim: Sequence[float] | None = None,
    ylim: Sequence[float] | None = None,
    kind: str = "energy",
    clip: float | None = None,
    grid_size: int = 100,
    linewidth: float = 1.0,
    title: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Figure:
    r"""Sampler trajectories (chains through time), optionally over the energy landscape.

    Each chain is a line from its start (black circle) to its end (white star).

    Args:
        trajectory: ``(B, T, 2)`` as returned by ``sampler.sample(...,
            return_trajectory=True)``, or a single chain ``(T, 2)``.
        model: Energy model whose landscape is drawn underneath (optional).
        ax: Axes to draw into (default: a new figure).
        max_chains: Draw at most this many chains (the first ones).
        xlim: Plot range of the first coordinate (default: fitted to the chains).
        ylim: Plot range of the second coordinate.
        kind: Landscape kind (see [`plot_energy_landscape`][torchebm.visualization.plot_energy_landscape]).
        clip: Landscape range shown (see [`landscape_values`][torchebm.visualization.landscape_values]).
        grid_size: Landscape grid points per axis.
        linewidth: Line width of the chains.
        title: Axes title.
        model_kwargs: Conditioning forwarded to the model of the landscape.

    Returns:
        The figure holding the plot.

    Example:
        >>> import torch
        >>> walk = torch.randn(4, 50, 2).cumsum(dim=1) * 0.1
        >>> fig = plot_trajectories(walk)
    """
    max_chains = check_int("max_chains", max_chains, minimum=1)
    if isinstance(trajectory, torch.Tensor):  # the shown chains only go to the host in float64
        shown = trajectory[:max_chains] if trajectory.ndim == 3 else trajectory
        traj = shown.detach().to("cpu", torch.float64).numpy()
    else:
        traj = np.asarray(trajectory, dtype=np.float64)
    if traj.ndim == 2:
        traj = traj[None]
    if traj.ndim != 3 or traj.shape[-1] != 2 or min(traj.shape[:2]) < 1:
        got = tuple(trajectory.shape) if isinstance(trajectory, torch.Tensor) else traj.shape
        raise ShapeError(
            f"trajectory must have shape (B, T, 2) or (T, 2) with B, T >= 1, got {got}"
        )
    traj = traj[:max_chains]
    flat = _warn_non_finite("trajectory", traj.reshape(-1, 2))
    landscape = dict(grid_size=grid_size, kind=kind, clip=clip, model_kwargs=model_kwargs)
    fig, ax, xlim_, ylim_ = _points_canvas((flat,), xlim, ylim, ax, model, landscape)
    colors = [f"C{i % 10}" for i in range(traj.shape[0])]
    lines = LineCollection(list(traj), colors=colors, linewidths=linewidth, alpha=0.9)
    ax.add_collection(lines)
    ax.scatter(traj[:, 0, 0], traj[:, 0, 1], c="black", s=25, marker="o", label="start", zorder=3)
    ax.scatter(
        traj[:, -1, 0],
        traj[:, -1, 1],
        c="white",
        edgecolors="black",
        s=80,
        marker="*",
        label="end",
        zorder=3,
    )
    ax.legend(loc="upper right", fontsize="small")
    _finish_plane(ax, xlim_, ylim_, title)
    return fig


def plot_vector_field(
    field: Callable[..., torch.Tensor],
    xlim: Sequence[float] = (-3.0, 3.0),
    ylim: Sequence[float] | None = None,
    grid_size: int = 20,
    *,
    t: float | None = None,
    ax: Axes | None = None,
    kind: str = "quiver",
    cmap: str = "magma",
    title: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Figure:
    r"""Arrows (``"quiver"``) or streamlines (``"stream"``) of a 2-D vector field.

    Useful for flow/EqM velocity fields ``f(x, t)``; arrows are coloured by the field's
    norm (and normalised to unit length for ``"quiver"``, so directions stay readable).

    Args:
        field: ``field(x)`` or ``field(x, t)`` returning ``(B, 2)``; see
            [`vector_field_grid`][torchebm.visualization.vector_field_grid].
        xlim: Range of the first coordinate.
        ylim: Range of the second coordinate (default: ``xlim``).
        grid_size: Grid points per axis.
        t: Time passed to the field (``None``: called without time).
        ax: Axes to draw into (default: a new figure).
        kind: ``"quiver"`` or ``"stream"``.
        cmap: Colormap of the field norm.
        title: Axes title.
        model_kwargs: Conditioning forwarded to the field.

    Returns:
        The figure holding the plot.

    Example:
        >>> fig = plot_vector_field(lambda x: -x, (-2, 2), grid_size=9)
    """
    kind = check_in("kind", kind, ("quiver", "stream"))
    X, Y, U, V = vector_field_grid(field, xlim, ylim, grid_size, t=t, model_kwargs=model_kwargs)
    norm = np.hypot(U, V)
    fig, ax = _figure_and_axes(ax, (6.0, 5.0))
    if kind == "quiver":
        safe = np.where(norm > 0, norm, 1.0)
        q = ax.quiver(X, Y, U / safe, V / safe, norm, cmap=cmap, pivot="mid")
        fig.colorbar(q, ax=ax, label="$\\|f(x)\\|$")
    else:
        sp = ax.streamplot(X, Y, U, V, color=norm, cmap=cmap, density=1.2)
        fig.colorbar(sp.lines, ax=ax, label="$\\|f(x)\\|$")
    _finish_plane(ax, (X[0, 0], X[0, -1]), (Y[0, 0], Y[-1, 0]), title)
    return fig


def _ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average of the finite values: a NaN/inf leaves it unchanged (one
    skipped step no longer blanks the rest of the curve); NaN before the first finite one."""
    out = np.full_like(values, np.nan)
    acc = np.nan
    for i, v in enumerate(values):
        if np.isfinite(v):
            acc = v if np.isnan(acc) else weight * acc + (1.0 - weight) * v
        out[i] = acc
    return out


_HISTORY_FORMS = (
    "a sequence of numbers; a mapping name -> sequence of numbers; a sequence of per-epoch "
    "metric dicts; or BaseTrainer.train's {'train': [{'loss': ...}, ...], 'val': [...]}"
)


def _is_records(v: Any) -> bool:
    """A list/tuple of metric dicts (one per epoch; empty counts: a split never validated)."""
    return isinstance(v, (list, tuple)) and all(isinstance(r, Mapping) for r in v)


def _record_curves(records: Sequence[Mapping], prefix: str) -> dict[str, list]:
    """One curve per metric of per-epoch dicts, in order of first appearance; an epoch
    without the metric is NaN (a gap)."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    return {f"{prefix}{k}": [r.get(k, float("nan")) for r in records] for k in keys}


def _history_curves(history: Any, ylabel: str) -> dict[str, Any]:
    """``name -> values`` from any accepted form of ``history``."""
    if isinstance(history, Mapping):
        values = list(history.values())
        if all(_is_records(v) for v in values) and any(len(v) for v in values):
            curves: dict[str, Any] = {}
            for split, records in history.items():  # BaseTrainer.train's history
                curves.update(_record_curves(records, f"{split}/"))
            if not curves:
                raise ConfigurationError(f"history holds no epochs: {dict(history)!r}")
            return curves
        return {str(k): v for k, v in history.items()}
    if _is_records(history) and len(history) > 0:
        return _record_curves(history, "")
    return {ylabel: history}


def _curve_values(name: str, values: Any) -> np.ndarray:
    """A curve as a 1-D float64 array, or a `TypeError` naming the entry and the forms."""
    if (
        isinstance(values, (str, bytes, Mapping))
        or not isinstance(values, (Sequence, np.ndarray, torch.Tensor))
        or getattr(values, "ndim", 1) == 0
    ):  # a 0-d tensor or array: one number, not a curve
        raise TypeError(
            f"history[{name!r}] must be a sequence of numbers, got {type(values).__name__}; "
            f"history may be {_HISTORY_FORMS}"
        )
    out = []
    for i, v in enumerate(values):
        one = v.numel() if isinstance(v, torch.Tensor) else getattr(v, "size", None)
        if isinstance(v, (torch.Tensor, np.ndarray)) and one == 1:  # one number: (), (1,), (1, 1)
            v = v.item()
        if not isinstance(v, numbers.Real):
            raise TypeError(
                f"history[{name!r}][{i}] must be a number (or a one-element tensor or array), got "
                f"{type(v).__name__}; history may be {_HISTORY_FORMS}"
            )
        out.append(float(v))
    if not out:
        raise ShapeError(f"history[{name!r}] must be a non-empty 1-D sequence of numbers")
    return np.asarray(out, dtype=np.float64)


def plot_training_curves(
    history: Sequence[Any] | Mapping[str, Any],
    *,
    ax: Axes | None = None,
    smoothing: float = 0.0,
    logy: bool = False,
    xlabel: str = "step",
    ylabel: str = "loss",
    title: str | None = None,
) -> Figure:
    r"""Line plot of one or several training curves (loss, metrics) against the step.

    Args:
        history: One of
            a sequence of numbers (one curve labelled ``ylabel``);
            a mapping ``name -> sequence`` (one curve per entry; sequences may differ in
            length);
            a sequence of per-epoch metric dicts (one curve per metric); or the history
            [`BaseTrainer.train`][torchebm.losses.BaseTrainer.train] returns,
            ``{"train": [{"loss": ...}, ...], "val": [...]}`` (one curve per metric of
            each split, named ``"train/loss"``, ``"val/<metric>"``; an empty split is
            skipped). A metric missing from some epochs' dicts leaves a gap there.
            Numbers may be Python/numpy numbers or one-element tensors or arrays.
        ax: Axes to draw into (default: a new figure).
        smoothing: Exponential moving-average weight in ``[0, 1)``; when ``> 0`` the raw
            curve is drawn faintly and the smoothed one on top. Non-finite values (a step
            skipped with ``nan_policy="skip"`` records a NaN loss) are gaps in the raw curve
            and are left out of the average, which carries its last value across them.
        logy: Logarithmic y axis (all values must then be positive).
        xlabel: Label of the x axis (the x values count the entries from 1: pass
            ``xlabel="epoch"`` for per-epoch metric dicts).
        ylabel: Label of the y axis.
        title: Axes title.

    Returns:
        The figure holding the plot.

    Raises:
        TypeError: ``history`` (or one of its entries) is none of the accepted forms; the
            message lists them.
        ShapeError: an empty curve.
        ConfigurationError: no curve at all, ``smoothing`` outside ``[0, 1)``, or
            ``logy=True`` with a value ``<= 0``.

    Example:
        >>> fig = plot_training_curves({"loss": [3.0, 2.0, 1.5, 1.2]}, smoothing=0.5)
        >>> history = {"train": [{"loss": 2.0}, {"loss": 1.0}], "val": [{"nll": 3.0}, {"nll": 2.5}]}
        >>> [line.get_label() for line in plot_training_curves(history).axes[0].get_lines()]
        ['train/loss', 'val/nll']
    """
    curves = _history_curves(history, ylabel)
    if not curves:
        raise ConfigurationError("history must hold at least one curve, got an empty mapping")
    check_probability("smoothing", smoothing, closed_right=False)
    ys = {name: _curve_values(name, values) for name, values in curves.items()}
    fig, ax = _figure_and_axes(ax, (6.0, 4.0))
    for i, (name, y) in enumerate(ys.items()):
        if logy and (y <= 0).any():
            raise ConfigurationError(f"logy=True needs positive values, history[{name!r}] has <= 0")
        steps = np.arange(1, y.size + 1)
        color = f"C{i % 10}"
        if smoothing > 0:
            ax.plot(steps, y, color=color, alpha=0.3, linewidth=0.8)
            ax.plot(steps, _ema(y, float(smoothing)), color=color, label=name)
        else:
            ax.plot(steps, y, color=color, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if title is not None:
        ax.set_title(title)
    return fig


def _interpolant(value: Any, method: str, owner: str) -> Any:
    """A registered name through `torchebm.interpolants.resolve_interpolant`; a
    `BaseInterpolant` or any object with ``method`` as it is; anything else a `TypeError`."""
    from torchebm.core import BaseInterpolant
    from torchebm.interpolants import INTERPOLANT_NAMES, resolve_interpolant

    if isinstance(value, str):
        return resolve_interpolant(value, owner=owner)
    if isinstance(value, BaseInterpolant) or callable(getattr(value, method, None)):
        return value
    raise TypeError(
        f"{owner}: interpolant must be a registered name ({', '.join(map(repr, INTERPOLANT_NAMES))}), "
        f"a BaseInterpolant or an object with a {method}() method, got {type(value).__name__}"
    )


def _interpolate(interpolant: Any, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor):
    out = interpolant.interpolate(x0, x1, t)
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def plot_interpolant_paths(
    interpolant: Any,
    x0: Any,
    x1: Any,
    *,
    n_times: int = 50,
    max_paths: int = 64,
    ax: Axes | None = None,
    cmap: str = "coolwarm",
    title: str | None = None,
) -> Figure:
    r"""Paths $t \mapsto x_t = \alpha(t) x_1 + \sigma(t) x_0$ from noise to data.

    Each pair ``(x0[i], x1[i])`` gives one path, coloured by $t$ (0 = noise, 1 =
    data, the convention of `torchebm.interpolants`).

    Args:
        interpolant: A registered name (``"linear"``, ``"cosine"``, ``"vp"``, ``"ve"``,
            ``"edm"``: see [`resolve_interpolant`][torchebm.interpolants.resolve_interpolant]),
            a [`BaseInterpolant`][torchebm.core.BaseInterpolant], or any object with
            ``interpolate(x0, x1, t) -> (x_t, u_t)``.
        x0: Noise endpoints ``(B, 2)``.
        x1: Data endpoints ``(B, 2)``.
        n_times: Number of times in ``[0, 1]`` per path.
        max_paths: Draw at most this many paths.
        ax: Axes to draw into (default: a new figure).
        cmap: Colormap of ``t``.
        title: Axes title.

    Returns:
        The figure holding the plot.

    Raises:
        TypeError: ``interpolant`` is none of the accepted kinds.
        ConfigurationError: an unknown interpolant name.

    Example:
        >>> import torch
        >>> fig = plot_interpolant_paths("cosine", torch.randn(8, 2), torch.ones(8, 2))
        >>> class Linear:
        ...     def interpolate(self, x0, x1, t):
        ...         t = t[:, None]
        ...         return t * x1 + (1 - t) * x0, x1 - x0
        >>> fig = plot_interpolant_paths(Linear(), torch.randn(8, 2), torch.ones(8, 2))
    """
    interpolant = _interpolant(interpolant, "interpolate", "plot_interpolant_paths")
    a = torch.as_tensor(_points("x0", x0), dtype=torch.float64)
    b = torch.as_tensor(_points("x1", x1), dtype=torch.float64)
    if a.shape != b.shape:
        raise ShapeError(
            f"x0 and x1 must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    n_times = check_int("n_times", n_times, minimum=2)
    max_paths = check_int("max_paths", max_paths, minimum=1)
    a, b = a[:max_paths], b[:max_paths]
    ts = torch.linspace(0.0, 1.0, n_times, dtype=torch.float64)
    pts = np.stack(
        [_interpolate(interpolant, a, b, t.expand(a.shape[0])).numpy() for t in ts], axis=1
    )  # (B, T, 2)
    segs = np.stack([pts[:, :-1], pts[:, 1:]], axis=2).reshape(-1, 2, 2)
    seg_t = np.tile(0.5 * (ts[:-1] + ts[1:]).numpy(), pts.shape[0])
    fig, ax = _figure_and_axes(ax, (6.0, 5.0))
    lc = LineCollection(list(segs), cmap=cmap, linewidths=1.0, alpha=0.8)
    lc.set_array(seg_t)
    lc.set_clim(0.0, 1.0)
    ax.add_collection(lc)
    fig.colorbar(lc, ax=ax, label="$t$ (0 = noise, 1 = data)")
    ax.scatter(pts[:, 0, 0], pts[:, 0, 1], s=12, c="tab:blue", label="$x_0$ (noise)", zorder=3)
    ax.scatter(pts[:, -1, 0], pts[:, -1, 1], s=12, c="tab:red", label="$x_1$ (data)", zorder=3)
    ax.legend(loc="upper right", fontsize="small")
    _finish_plane(ax, *_auto_limits(pts.reshape(-1, 2)), title, labels=False)
    return fig


def _clip_outliers(ax: Axes, values: np.ndarray) -> None:
    """Clip the y axis to the bulk of ``values`` when some lie far outside it (and say so)."""
    vals = values[np.isfinite(values)]
    if not vals.size:
        return
    lo, hi = np.percentile(vals, [1.0, 99.0])
    lo, hi = lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo)
    v_min, v_max = float(vals.min()), float(vals.max())
    if not (hi > lo and (v_min < lo or v_max > hi)):
        return
    lo, hi = max(lo, v_min), min(hi, v_max)
    pad = 0.05 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    ax.text(
        0.01,
        0.01,
        f"y axis clipped; values range over [{v_min:.3g}, {v_max:.3g}]",
        transform=ax.transAxes,
        fontsize="x-small",
        color="gray",
    )


@torch.no_grad()
def plot_interpolant_schedules(
    interpolant: Any,
    *,
    n_times: int = 201,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    r"""The schedules $\alpha(t)$, $\sigma(t)$ of an interpolant and their derivatives.

    A schedule may be singular at an end (the variance-preserving path has
    $\dot\sigma(1) = -5 \cdot 10^4$, from $\sigma(1) = 10^{-6}$): when some values lie far
    outside the bulk (beyond the 1st-99th percentile range widened by half its width) the
    y axis is clipped to that range (plus a 5% margin), so the four curves stay readable,
    and a note in the corner gives the full range of the values.

    Args:
        interpolant: A registered name (``"linear"``, ``"cosine"``, ``"vp"``, ``"ve"``,
            ``"edm"``: see [`resolve_interpolant`][torchebm.interpolants.resolve_interpolant]),
            a [`BaseInterpolant`][torchebm.core.BaseInterpolant], or any object with
            ``compute_alpha_t(t) -> (alpha, d_alpha)`` and
            ``compute_sigma_t(t) -> (sigma, d_sigma)``.
        n_times: Number of times in ``[0, 1]``.
        ax: Axes to draw into (default: a new figure).
        title: Axes title (default: the interpolant's class name).

    Returns:
        The figure with the four curves (alpha, sigma and their derivatives in t).

    Raises:
        TypeError: A value that is not a registry name, an interpolant or an object with
            the two methods; a name the registry lacks is a `ConfigurationError`.

    Example:
        >>> fig = plot_interpolant_schedules("vp")
        >>> fig.axes[0].get_title()
        'VariancePreservingInterpolant'
    """
    interpolant = _interpolant(interpolant, "compute_alpha_t", "plot_interpolant_schedules")
    n_times = check_int("n_times", n_times, minimum=2)
    t = torch.linspace(0.0, 1.0, n_times, dtype=torch.float64)
    alpha, d_alpha = interpolant.compute_alpha_t(t)
    sigma, d_sigma = interpolant.compute_sigma_t(t)
    fig, ax = _figure_and_axes(ax, (6.0, 4.0))
    tn = t.numpy()

    def arr(v: Any) -> np.ndarray:
        v = torch.as_tensor(v, dtype=torch.float64)
        return np.broadcast_to(v.reshape(-1).numpy(), tn.shape)

    curves = [arr(v) for v in (alpha, sigma, d_alpha, d_sigma)]
    ax.plot(tn, curves[0], color="tab:red", label=r"$\alpha(t)$ (data weight)")
    ax.plot(tn, curves[1], color="tab:blue", label=r"$\sigma(t)$ (noise weight)")
    ax.plot(tn, curves[2], color="tab:red", linestyle="--", label=r"$\dot\alpha(t)$")
    ax.plot(tn, curves[3], color="tab:blue", linestyle="--", label=r"$\dot\sigma(t)$")
    _clip_outliers(ax, np.concatenate(curves))
    ax.axhline(0.0, color="gray", linewidth=0.5)
    ax.set_xlabel("$t$ (0 = noise, 1 = data)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title if title is not None else type(interpolant).__name__)
    return fig
