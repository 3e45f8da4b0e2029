"""Class-conditional sampling (``sample(y=...)``) with scheduled hyper-parameters, against
closed forms.

The energy $E(x \\mid y) = \\lVert x - \\mu_y\\rVert^2 / (2 s_y^2)$ gives each class its own
Gaussian. A Langevin chain on it stays Gaussian: with $a_k = 1 - \\eta_k / s_y^2$,
$m_{k+1} = \\mu_y + a_k (m_k - \\mu_y)$ and $v_{k+1} = a_k^2 v_k + 2\\sigma^2\\eta_k$, where
$\\eta_k$ is the schedule's value after $k$ steps (its start value first). HMC leaves each
class's Gaussian invariant, and on a flat energy (every proposal accepted) one iteration
moves a chain by $L\\epsilon_k p$, which shows the step size each iteration used.
"""

from __future__ import annotations

import math

import torch

from torchebm.core import BaseModel, ExponentialDecayScheduler, MultiStepScheduler
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics

F64 = torch.float64
MUS = torch.tensor([[-3.0, 1.0], [0.0, 0.0], [2.5, -1.5]], dtype=F64)
S2 = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
Z = 5.0


class ClassGaussian(BaseModel):
    """$E(x \\mid y) = \\lVert x - \\mu_y\\rVert^2 / (2 s_y^2)$; needs ``y``."""

    def forward(self, x, y):
        return (x - MUS[y]).square().sum(-1) / (2 * S2[y])


class Flat(BaseModel):
    def forward(self, x):
        return x.sum(-1) * 0.0


def _labels(per_class: int) -> torch.Tensor:
    return torch.arange(len(S2)).repeat_interleave(per_class)


def _assert_gaussian(x, mean, var):
    n = x.shape[0]
    assert Z * math.sqrt(2 / n) < 0.05  # a 5% error of the variance fails
    assert ((x.mean(0) - mean).abs() <= Z * (var / n).sqrt()).all(), (x.mean(0), mean)
    assert ((x.var(0) / var - 1).abs() <= Z * math.sqrt(2 / n)).all(), (x.var(0), var)


def test_langevin_gives_each_chain_its_own_class_with_a_scheduled_step():
    per, n_steps, sigma = 25_000, 30, 0.9
    y = _labels(per)
    sampler = LangevinDynamics(
        ClassGaussian(), step_size=ExponentialDecayScheduler(0.1, 0.97), noise_scale=sigma,
        dtype=F64,
    )  # fmt: skip
    x = sampler.sample(
        x=torch.zeros(len(y), 2, dtype=F64), n_steps=n_steps, y=y,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    for c in range(len(S2)):
        m, v = torch.zeros(2, dtype=F64), torch.zeros(2, dtype=F64)
        for k in range(n_steps):
            eta = 0.1 * 0.97**k
            a = 1 - eta / S2[c]
            m, v = MUS[c] + a * (m - MUS[c]), a * a * v + 2 * sigma**2 * eta
        _assert_gaussian(x[y == c], m, v)
    # another class's recursion is far outside the tolerance
    m_wrong = MUS[1] + (1 - 0.1 / S2[1]) ** n_steps * (0 - MUS[1])
    assert (x[y == 0].mean(0) - m_wrong).abs().max() > 1.0


def test_hmc_keeps_each_class_law_under_its_own_label():
    per = 25_000
    y = _labels(per)
    g = torch.Generator().manual_seed(1)
    x0 = MUS[y] + S2[y, None].sqrt() * torch.randn(len(y), 2, dtype=F64, generator=g)
    hmc = HamiltonianMonteCarlo(ClassGaussian(), step_size=0.4, n_leapfrog_steps=4, dtype=F64)
    x = hmc.sample(x=x0, n_steps=10, model_kwargs={"y": y}, generator=g)
    assert not torch.equal(x, x0)
    for c in range(len(S2)):
        _assert_gaussian(x[y == c], MUS[c], S2[c].repeat(2))


def test_hmc_uses_the_scheduled_step_size_before_stepping_it():
    # iteration k uses the value after k scheduler steps: 0.1, 0.2, 0.4, 0.8
    n, n_leapfrog = 40_000, 3
    hmc = HamiltonianMonteCarlo(
        Flat(), step_size=MultiStepScheduler(0.1, [1, 2, 3], gamma=2.0),
        n_leapfrog_steps=n_leapfrog, dtype=F64,
    )  # fmt: skip
    traj = hmc.sample(
        x=torch.zeros(n, 1, dtype=F64), n_steps=4, return_trajectory=True,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    moves = torch.diff(traj[:, :, 0], dim=1, prepend=torch.zeros(n, 1, dtype=F64))
    got = moves.std(0) / n_leapfrog
    expected = torch.tensor([0.1, 0.2, 0.4, 0.8], dtype=F64)
    assert ((got / expected - 1).abs() < Z / math.sqrt(2 * n)).all(), got
    # a second call without reset goes on from 0.8 (the value after 4 steps: 3 milestones)
    again = hmc.sample(
        x=torch.zeros(n, 1, dtype=F64), n_steps=1, reset_schedulers=False,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    assert abs(float(again.std()) / (n_leapfrog * 0.8) - 1) < Z / math.sqrt(2 * n)
