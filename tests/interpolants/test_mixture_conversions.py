"""Schedules and velocity/score/noise/data conversions on a Gaussian-mixture path.

For a mixture the marginal fields are not affine in x (posterior-weighted mixes), so these
identities are checked away from the Gaussian case the other tests use. The references
(`_support.mixture_paths`) are closed forms built from each path's documented formulas.
"""

from __future__ import annotations

import pytest
import torch
from _support.mixture_paths import F64, mixture_2d, schedules

from torchebm.interpolants import get_interpolant

PATHS = ("linear", "cosine", "vp", "ve", "edm")
TIMES = (0.05, 0.3, 0.7, 0.95)


def _case(path: str, t: float):
    m = mixture_2d()
    x = 1.3 * m.sample(64, torch.Generator().manual_seed(0))  # also off the data's bulk
    return get_interpolant(path), x, torch.full((64,), t, dtype=F64), m.at(path, x, t)


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * want.abs().max().item(), msg=what)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("t", TIMES)
def test_schedules_follow_the_documented_formulas(path, t):
    interp, _, tt, _ = _case(path, t)
    got = (*interp.compute_alpha_t(tt), *interp.compute_sigma_t(tt))
    for name, g, w in zip(("alpha", "d_alpha", "sigma", "d_sigma"), got, schedules(path, tt)):
        _close(g, w, f"{path} {name}(t={t})")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("t", TIMES)
def test_conversions_between_exact_mixture_fields(path, t):
    interp, x, tt, c = _case(path, t)
    v, s, x0, x1 = c["velocity"], c["score"], c["x0_hat"], c["x1_hat"]
    _close(interp.velocity_to_score(v, x, tt), s, f"{path} velocity_to_score")
    _close(interp.score_to_velocity(s, x, tt), v, f"{path} score_to_velocity")
    _close(interp.velocity_to_noise(v, x, tt), x0, f"{path} velocity_to_noise")
    _close(interp.velocity_to_data(v, x, tt), x1, f"{path} velocity_to_data")
    _close(interp.noise_to_score(x0, x, tt), s, f"{path} noise_to_score")
    _close(interp.noise_to_velocity(x0, x, tt), v, f"{path} noise_to_velocity")
    _close(interp.score_to_noise(s, x, tt), x0, f"{path} score_to_noise")
    # the probability-flow drift (A, B_v): v = -A + B_v s at the closed-form score
    a, bv = interp.compute_drift(x, tt)
    _close(bv * s - a, v, f"{path} compute_drift")
