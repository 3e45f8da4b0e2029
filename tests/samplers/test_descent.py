"""GradientDescentSampler and NesterovSampler: exact iterates, convergence, adaptive compute."""

from __future__ import annotations

import pytest
import torch

from torchebm.core import BaseModel, GaussianModel, HarmonicModel
from torchebm.samplers import GradientDescentSampler, NesterovSampler

MU = torch.tensor([1.0, -2.0], dtype=torch.float64)
# condition number 100: eigenvalues of the precision are 1 and 100
Q = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=torch.float64)
COV = Q @ torch.diag(torch.tensor([1.0, 0.01], dtype=torch.float64)) @ Q.T


def quadratic():
    return GaussianModel(MU, COV, dtype=torch.float64)


def test_gradient_descent_iterates_match_the_closed_form():
    eta, n = 0.015, 50
    x0 = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sampler = GradientDescentSampler(quadratic(), step_size=eta, dtype=torch.float64)
    traj = sampler.sample(x=x0, n_steps=n, thin=10, return_trajectory=True)
    a = torch.eye(2, dtype=torch.float64) - eta * torch.linalg.inv(COV)
    for k in range(5):
        expected = MU + (x0 - MU) @ torch.linalg.matrix_power(a, 10 * (k + 1)).T
        torch.testing.assert_close(traj[:, k], expected)


def test_gradient_descent_and_nesterov_reach_the_minimum():
    x0 = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    gd = GradientDescentSampler(quadratic(), step_size=0.015, dtype=torch.float64)
    nag = NesterovSampler(quadratic(), step_size=0.01, momentum=0.9, dtype=torch.float64)
    x_gd = gd.sample(x=x0, n_steps=2000)
    x_nag = nag.sample(x=x0, n_steps=400)
    err_gd = (x_gd - MU).abs().max().item()
    err_nag = (x_nag - MU).abs().max().item()
    print(f"GD 2000 steps max err {err_gd:.2e}; Nesterov 400 steps max err {err_nag:.2e}")
    assert err_gd < 1e-6 and err_nag < 1e-6
    # Nesterov is much faster on an ill-conditioned problem: GD after 400 steps is far off
    assert (gd.sample(x=x0, n_steps=400) - MU).abs().max() > 1e-3


class QuarticBowl(BaseModel):
    """Convex, non-quadratic: E(x) = sum((x - 1)^4 + (x - 1)^2), minimum at 1."""

    def forward(self, x):
        d = x - 1.0
        return (d.pow(4) + d.square()).sum(-1)


@pytest.mark.parametrize("cls", [GradientDescentSampler, NesterovSampler])
def test_convex_non_quadratic_energy(cls):
    sampler = cls(QuarticBowl(), step_size=0.02)
    x = sampler.sample(x=torch.linspace(-0.5, 2.5, 10).reshape(5, 2), n_steps=400)
    assert (x - 1).abs().max() < 1e-4


def test_nesterov_first_steps_match_the_recurrence():
    # v1 = -eta grad(x0), x1 = x0 + v1; v2 = mu v1 - eta grad(x1 + mu v1), x2 = x1 + v2
    eta, mu, k = 0.1, 0.7, 3.0
    x0 = torch.tensor([[2.0]])
    traj = NesterovSampler(HarmonicModel(k=k), step_size=eta, momentum=mu).sample(
        x=x0, n_steps=2, return_trajectory=True
    )
    v1 = -eta * k * 2.0
    x1 = 2.0 + v1
    v2 = mu * v1 - eta * k * (x1 + mu * v1)
    torch.testing.assert_close(traj[0, :, 0], torch.tensor([x1, x1 + v2]))


def test_adaptive_compute_counts_steps_per_chain_and_saves_steps():
    x0 = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    tol = 1e-4
    gd = GradientDescentSampler(quadratic(), step_size=0.015, grad_tol=tol, dtype=torch.float64)
    nag = NesterovSampler(
        quadratic(), step_size=0.01, momentum=0.8, grad_tol=tol, dtype=torch.float64
    )
    x_gd, d_gd = gd.sample(x=x0, n_steps=5000, return_diagnostics=True)
    x_nag, d_nag = nag.sample(x=x0, n_steps=5000, return_diagnostics=True)
    used_gd, used_nag = d_gd["steps_used"][-1], d_nag["steps_used"][-1]
    print(
        f"steps used: GD mean {used_gd.double().mean():.0f}, Nesterov {used_nag.double().mean():.0f}"
    )
    assert used_gd.shape == (16,) and (used_gd > 0).all() and (used_gd < 5000).all()
    assert (used_nag.double().mean() < used_gd.double().mean() / 3).item()
    for x in (x_gd, x_nag):  # every stopped chain satisfies the stop rule
        assert (((x - MU) @ torch.linalg.inv(COV)).norm(dim=1) < tol).all()


def test_stopped_chains_are_frozen():
    nag = NesterovSampler(HarmonicModel(), step_size=0.2, momentum=0.5, grad_tol=1e-2)
    traj, diag = nag.sample(
        x=torch.tensor([[1.0], [50.0]]),
        n_steps=100,
        return_trajectory=True,
        return_diagnostics=True,
    )
    used = diag["steps_used"][-1]
    for b in range(2):
        frozen = traj[b, int(used[b]) :]
        assert (frozen == frozen[0]).all()
    assert (diag["steps_used"][1:] >= diag["steps_used"][:-1]).all()


def test_validation():
    with pytest.raises(ValueError, match="momentum"):
        NesterovSampler(HarmonicModel(), momentum=1.0)
    with pytest.raises(ValueError, match="momentum"):
        NesterovSampler(HarmonicModel(), momentum=-0.1)
    with pytest.raises(ValueError, match="grad_tol"):
        GradientDescentSampler(HarmonicModel(), grad_tol=0.0)
    with pytest.raises(TypeError):
        GradientDescentSampler(HarmonicModel(), integrator="euler")
    with pytest.raises(TypeError):
        NesterovSampler(HarmonicModel(), integrator="euler")
