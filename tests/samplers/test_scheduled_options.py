"""Scheduled step sizes and noise scales against the exact recursions of the discrete chains.

Step ``k`` of a sampler uses a scheduler's value after ``k`` scheduler steps (its start
value first). On a 1-D Gaussian target $N(\\mu, s^2)$ a Langevin chain with the step
$\\eta_k$ and noise scale $\\sigma_k$ stays Gaussian: with $a_k$ its drift factor,
$m_{k+1} = \\mu + a_k (m_k - \\mu)$ and $v_{k+1} = a_k^2 v_k + 2\\sigma_k^2\\eta_k$
($a_k = 1 - \\eta_k/s^2$ for Euler-Maruyama, $1 - \\eta_k/s^2 + (\\eta_k/s^2)^2/2$ for
Heun's drift with Euler-Maruyama noise). Nesterov's and gradient descent's iterates on a
quadratic follow their textbook recursions with $\\eta_k$.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.core import (
    CosineScheduler,
    ExponentialDecayScheduler,
    GaussianModel,
    LinearScheduler,
    MultiStepScheduler,
)
from torchebm.samplers import GradientDescentSampler, LangevinDynamics, NesterovSampler

F64 = torch.float64
MU, S2 = 1.0, 2.0


def _eta(k):
    return 0.3 * 0.9**k  # ExponentialDecayScheduler(0.3, 0.9)


def _sigma(k):
    return 1.5 + (0.5 - 1.5) * min(k, 20) / 20  # LinearScheduler(1.5, 0.5, 20)


@pytest.mark.parametrize("integrator", ["euler_maruyama", "heun"])
def test_langevin_with_scheduled_step_and_noise_follows_the_exact_recursion(integrator):
    n_steps, n = 30, 100_000
    model = GaussianModel(torch.tensor([MU], dtype=F64), torch.tensor([[S2]], dtype=F64))
    sampler = LangevinDynamics(
        model, step_size=ExponentialDecayScheduler(0.3, 0.9), dtype=F64, integrator=integrator,
        noise_scale=LinearScheduler(1.5, 0.5, 20),
    )  # fmt: skip
    x = sampler.sample(
        x=torch.zeros(n, 1, dtype=F64), n_steps=n_steps, generator=torch.Generator().manual_seed(0)
    )
    m, v = 0.0, 0.0
    for k in range(n_steps):
        r = _eta(k) / S2
        a = 1 - r if integrator == "euler_maruyama" else 1 - r + r * r / 2
        m, v = MU + a * (m - MU), a * a * v + 2 * _sigma(k) ** 2 * _eta(k)
    z = 4.0
    assert z * math.sqrt(2 / n) < 0.05  # a 5% error of the variance fails
    assert abs(float(x.mean()) - m) < z * math.sqrt(v / n), (float(x.mean()), m)
    assert abs(float(x.var()) / v - 1) < z * math.sqrt(2 / n), (float(x.var()), v)
    # the constant start values give other moments: the schedules are what is tested
    m0, v0 = 0.0, 0.0
    for _ in range(n_steps):
        m0, v0 = MU + (1 - 0.3 / S2) * (m0 - MU), (1 - 0.3 / S2) ** 2 * v0 + 2 * 1.5**2 * 0.3
    assert abs(float(x.var()) / v0 - 1) > 0.05


def _quadratic():
    # E = (x - c)^T P (x - c) / 2 with P = diag(1, 10)
    cov = torch.diag(torch.tensor([1.0, 0.1], dtype=F64))
    return GaussianModel(torch.tensor([1.0, -2.0], dtype=F64), cov, dtype=F64)


def test_descent_samplers_with_a_scheduled_step_follow_their_recursions():
    c = torch.tensor([1.0, -2.0], dtype=F64)
    p = torch.tensor([1.0, 10.0], dtype=F64)
    x0 = torch.tensor([[3.0, 0.5], [-1.0, -4.0]], dtype=F64)
    n_steps, mu = 12, 0.6

    def eta(k):  # CosineScheduler(0.08, 0.01, 10)
        return 0.01 + (0.08 - 0.01) * 0.5 * (1 + math.cos(math.pi * min(k, 10) / 10))

    def cosine():
        return CosineScheduler(0.08, 0.01, 10)

    gd = GradientDescentSampler(_quadratic(), step_size=cosine(), dtype=F64)
    nag = NesterovSampler(_quadratic(), step_size=cosine(), momentum=mu, dtype=F64)
    got_gd = gd.sample(x=x0, n_steps=n_steps, return_trajectory=True)
    got_nag = nag.sample(x=x0, n_steps=n_steps, return_trajectory=True)
    x, y, v = x0.clone(), x0.clone(), torch.zeros_like(x0)
    for k in range(n_steps):
        x = x - eta(k) * p * (x - c)
        v = mu * v - eta(k) * p * (y + mu * v - c)  # the look-ahead gradient
        y = y + v
        torch.testing.assert_close(got_gd[:, k], x, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got_nag[:, k], y, rtol=1e-12, atol=1e-12)


def test_a_milestone_schedule_changes_the_step_at_the_milestone():
    # first coordinate (precision 1, minimum 1): x - 1 <- (1 - eta_k)(x - 1), eta = 0.5 for
    # k < 3 and 0.05 from the milestone on
    gd = GradientDescentSampler(
        _quadratic(), step_size=MultiStepScheduler(0.5, [3], gamma=0.1), dtype=F64
    )
    x0 = torch.tensor([[2.0, -2.0]], dtype=F64)
    out = gd.sample(x=x0, n_steps=5)
    expected_first = 1.0 + (2.0 - 1.0) * 0.5**3 * 0.95**2
    assert out[0, 0].item() == pytest.approx(expected_first, rel=1e-12)
