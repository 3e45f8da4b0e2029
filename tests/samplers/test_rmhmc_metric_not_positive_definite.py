"""RMHMC with a metric that is not positive definite everywhere."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch

from torchebm.core import GaussianModel
from torchebm.core.errors import ConfigurationError
from torchebm.samplers import RiemannianManifoldHMC


def _metric(x: torch.Tensor) -> torch.Tensor:
    """diag(1, +-1): indefinite where x_0 > 0.5."""
    second = torch.where(x[:, 0] > 0.5, -1.0, 1.0)
    return torch.diag_embed(torch.stack([torch.ones_like(second), second], 1))


def test_a_start_where_the_metric_is_not_positive_definite_raises():
    # those chains rejected every proposal and stayed put, with no warning
    rm = RiemannianManifoldHMC(GaussianModel(torch.zeros(2), torch.eye(2)), _metric, 0.2, 3)
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.2, 0.1], [0.9, -1.0]])
    with pytest.raises(ConfigurationError, match=r"positive definite.*chains \[1, 3\]"):
        rm.sample(x=x, n_steps=2, generator=torch.Generator().manual_seed(0))


def test_proposals_where_the_metric_is_not_positive_definite_are_rejected():
    rm = RiemannianManifoldHMC(GaussianModel(torch.zeros(2), torch.eye(2)), _metric, 0.2, 3)
    x = torch.zeros(200, 2)
    with pytest.warns(RuntimeWarning, match="not symmetric positive definite"):
        out, diag = rm.sample(
            x=x, n_steps=30, return_diagnostics=True, generator=torch.Generator().manual_seed(0)
        )
    assert bool(torch.isfinite(out).all())
    assert not bool((out[:, 0] > 0.5).any())  # never accepted into the indefinite region
    assert float(diag["acceptance_rate"].mean()) > 0.3  # the chains do move


B, N_STEPS = 6, 4
START = torch.linspace(-1.0, 1.0, 2 * B).reshape(B, 2)


def _singular_away_from_start(x: torch.Tensor) -> torch.Tensor:
    """Identity at the starting points; elsewhere ``[[1, r], [r, 1]]`` with
    ``r = 1 - 2e-10`` (condition number 1e10: singular in float32, its Cholesky fails)."""
    near = (x - START).abs().amax(1) < 1e-4
    r = torch.where(near, 0.0, 1 - 2e-10).to(x.dtype)
    g = torch.eye(2, dtype=x.dtype).repeat(x.shape[0], 1, 1)
    g[:, 0, 1] = g[:, 1, 0] = r
    return g


def test_metric_not_positive_definite_is_reported_as_such():
    sampler = RiemannianManifoldHMC(
        GaussianModel(torch.zeros(2), torch.eye(2)),
        _singular_away_from_start,
        step_size=0.3,
        n_leapfrog_steps=3,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        out = sampler.sample(
            x=START.clone(), n_steps=N_STEPS, generator=torch.Generator().manual_seed(0)
        )
    # every proposal leaves the start, where G is singular: all rejected, chains stay
    assert torch.equal(out, START)
    warned = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    messages = [str(w.message) for w in warned]
    assert len(messages) == 1, messages
    assert (warned[0].filename, warned[0].lineno) == (__file__, line)  # the user's call
    assert f"{B * N_STEPS} proposals in {B} of {B} chains" in messages[0]
    assert "not symmetric positive definite" in messages[0]
    assert "did not converge" not in messages[0]
    assert torch.equal(sampler.unconverged_proposals, torch.zeros(B, dtype=torch.int64))
