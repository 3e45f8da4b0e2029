"""RiemannianManifoldHMC's metric without a graph in x; HMC's square mass of 2-D events.

A metric that depends on x but carries no graph (numpy, ``.detach()``, ``no_grad``) drops
dG/dx from the force: the generalised leapfrog is then not volume-preserving and the
Metropolis test cannot correct it (a Student-t's variance came out 0.742 for 9/7, in silence).
RiemannianManifoldHMC warns at the start (a piecewise-constant metric has no graph either, and
is fine); a constant metric has no dG/dx and passes in silence."""

from __future__ import annotations

import warnings

import pytest
import torch

from torchebm.core import BaseModel
from torchebm.samplers import RiemannianManifoldHMC


class _StudentT(BaseModel):
    """Student-t with 9 degrees of freedom in 1-D: variance 9/7."""

    def forward(self, x):
        return 5.0 * torch.log1p(x.square().sum(-1) / 9.0)


def _metric(x):
    return (3.0 / (1 + x.square()) + 0.3)[:, :, None]


def _start(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, generator=g, dtype=torch.float64)


def test_a_detached_metric_warns():
    sampler = RiemannianManifoldHMC(
        _StudentT(), lambda x: _metric(x.detach()), step_size=0.3, dtype=torch.float64
    )
    with pytest.warns(
        RuntimeWarning,
        match=r"changes with x but has no graph in x at the starting points of chains \[0, 1",
    ):
        sampler.sample(x=_start(8), n_steps=1)


def test_a_constant_or_differentiable_metric_runs_in_silence():
    # a per-chain constant G and a piecewise-constant one (away from its jump) have no graph
    # in x either, and are right: comparing G across chains warned for both
    eye = torch.eye(1, dtype=torch.float64)
    scales = torch.linspace(1.0, 2.0, 8, dtype=torch.float64)
    metrics = (
        lambda x: eye.expand(len(x), 1, 1),
        lambda x: eye * scales[:, None, None],
        lambda x: eye * torch.where(x[:, :1] > 0, 2.0, 1.0)[:, :, None],
        _metric,
    )
    for metric in metrics:
        sampler = RiemannianManifoldHMC(_StudentT(), metric, step_size=0.3, dtype=torch.float64)
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="metric_fn")
            out = sampler.sample(x=_start(8), n_steps=2, generator=torch.Generator().manual_seed(1))
        assert torch.isfinite(out).all()


def test_hmc_takes_a_square_mass_of_two_dimensional_events_as_their_diagonal():
    # a (D, D) mass is a dense matrix for chains (B, D); for events (B, D, D) it is their
    # diagonal, whose entries must be positive (tests/samplers/test_hmc_dense_mass.py)
    from torchebm.core import BaseModel
    from torchebm.core.errors import ConfigurationError
    from torchebm.samplers import HamiltonianMonteCarlo

    class Quadratic(BaseModel):
        def forward(self, x):
            return 0.5 * x.square().flatten(1).sum(1)

    matrix = torch.tensor([[2.0, -0.5], [-0.5, 1.0]])
    hmc = HamiltonianMonteCarlo(Quadratic(), mass=matrix)
    with pytest.raises(ConfigurationError, match=r"mass of shape \(2, 2\) has entries <= 0"):
        hmc.sample(x=torch.zeros(4, 2, 2), n_steps=1)
    assert hmc.sample(x=torch.zeros(4, 2), n_steps=1).shape == (4, 2)


def test_rmhmc_evaluates_the_energy_once_per_step_outside_its_force():
    """The Hamiltonian's kinetic terms at the start and the end of a trajectory were computed
    with a model call each whose energy was thrown away (two of three energy evaluations per
    step outside the force). Counted: calls whose input carries no graph."""

    class Counting(_StudentT):
        plain = 0

        def forward(self, x):
            Counting.plain += not x.requires_grad
            return super().forward(x)

    sampler = RiemannianManifoldHMC(Counting(), _metric, step_size=0.3, dtype=torch.float64)
    sampler.sample(x=_start(8), n_steps=3, generator=torch.Generator().manual_seed(1))
    assert Counting.plain == 1 + 3  # the start, then each proposal's energy


def test_a_metric_with_a_parameter_graph_but_detached_x_warns():
    # G carries a graph (its parameters') but none from x: still a force without dG/dx
    lin = torch.nn.Linear(1, 1).double()

    def metric(x):
        return (1.5 + torch.tanh(lin(x.detach())).square())[:, :, None]

    sampler = RiemannianManifoldHMC(_StudentT(), metric, step_size=0.3, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="changes with x but has no graph in x"):
        sampler.sample(x=_start(8), n_steps=1)
    assert lin.weight.grad is None  # the check leaves no gradient in the metric's parameters


@pytest.mark.parametrize("bad", ["square", "numpy"])
def test_a_metric_of_the_wrong_shape_or_type_is_named_first(bad):
    from torchebm.core.errors import ShapeError

    def metric(x):
        g = torch.eye(1, dtype=x.dtype)  # (D, D), not (B, D, D)
        return g.numpy() if bad == "numpy" else g

    sampler = RiemannianManifoldHMC(_StudentT(), metric, step_size=0.3, dtype=torch.float64)
    error = TypeError if bad == "numpy" else ShapeError
    with pytest.raises(error, match="metric_fn must return"):
        sampler.sample(x=_start(5), n_steps=1)
