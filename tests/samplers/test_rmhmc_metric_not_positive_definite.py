"""RMHMC with a metric that is not positive definite everywhere."""

from __future__ import annotations

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
    out, diag = rm.sample(
        x=x, n_steps=30, return_diagnostics=True, generator=torch.Generator().manual_seed(0)
    )
    assert bool(torch.isfinite(out).all())
    assert not bool((out[:, 0] > 0.5).any())  # never accepted into the indefinite region
    assert float(diag["acceptance_rate"].mean()) > 0.3  # the chains do move
