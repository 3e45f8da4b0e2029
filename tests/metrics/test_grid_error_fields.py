"""The error fields of `grid_log_partition` and `grid_nll` against numpy: the error is
$|\\log Z_h - \\log Z_{2h}|$ of the trapezoidal rule on the nested grids, the standard error
the sample standard deviation of the energies over $\\sqrt N$."""

import math

import numpy as np
import torch

from torchebm.metrics import grid_log_partition, grid_nll

S = 0.3  # a narrow Gaussian on a coarse grid: the two trapezoidal sums differ visibly


def _energy(x):
    return 0.5 * (x**2).sum(-1) / S**2


def _log_trapezoid(logp, h):
    w = np.ones(logp.shape[0])
    w[[0, -1]] = 0.5
    return math.log(float(np.sum(np.outer(w, w) * np.exp(logp)))) + 2 * math.log(h)


def test_log_partition_error_is_the_nested_grid_difference():
    n, lo, hi = 33, -4.0, 4.0
    r = grid_log_partition(_energy, extent=((lo, hi), (lo, hi)), n_points=n, dtype=torch.float64)
    g = np.linspace(lo, hi, n)
    logp = -0.5 * (g[:, None] ** 2 + g[None, :] ** 2) / S**2
    h = (hi - lo) / (n - 1)
    fine, coarse = _log_trapezoid(logp, h), _log_trapezoid(logp[::2, ::2], 2 * h)
    assert abs(fine - coarse) > 1e-3  # the estimate is not negligible on this grid
    assert abs(r.log_z - fine) < 1e-12
    assert abs(r.error - abs(fine - coarse)) < 1e-12 * max(1.0, abs(fine))


def test_nll_standard_error_is_the_sample_standard_error():
    x = np.random.default_rng(7).standard_normal((9, 2))
    lz = grid_log_partition(_energy, extent=((-4.0, 4.0), (-4.0, 4.0)), dtype=torch.float64)
    r = grid_nll(_energy, torch.from_numpy(x), log_partition=lz)
    e = 0.5 * (x**2).sum(1) / S**2
    assert abs(r.standard_error - e.std(ddof=1) / math.sqrt(len(e))) < 1e-12 * e.std()
    assert abs(r.nll - (e.mean() + lz.log_z)) < 1e-10
