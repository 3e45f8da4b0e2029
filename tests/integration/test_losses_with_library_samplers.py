"""Losses run with the library's own samplers (torchebm-losses does not depend on
torchebm-samplers, so these live with the tests that install every piece)."""

from __future__ import annotations

import math

import torch
from torch import nn

from torchebm.core import GaussianModel
from torchebm.losses import (
    BaseTrainer,
    ContrastiveDivergence,
    ContrastiveDivergenceTrainer,
    ParallelTemperingCD,
)
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_hmc_replicas_keep_the_tempered_targets():
    # E = x^2 / 2: replica r targets exp(-E / T_r) = N(0, T_r). Started there exactly, an
    # exact (Metropolis) sampler with swaps keeps every replica's variance at T_r; a wrong
    # tempering (E T_r, or E for every replica) moves them by a factor of T_r^2 or T_r
    n, temps = 16_000, (1.0, 2.0, 4.0)
    model = GaussianModel(torch.zeros(1, dtype=torch.float64), torch.eye(1, dtype=torch.float64))
    hmc = HamiltonianMonteCarlo(model, step_size=0.5, n_leapfrog_steps=3, dtype=torch.float64)
    pt = ParallelTemperingCD(
        model, hmc, temperatures=temps, k_steps=30, swap_every=3, dtype=torch.float64
    )
    g = gen(2)
    scale = torch.tensor(temps, dtype=torch.float64).sqrt().view(3, 1, 1)
    pt.tempered_chains = torch.randn(3, n, 1, generator=g, dtype=torch.float64) * scale
    pt.negative_phase(torch.zeros(n, 1, dtype=torch.float64), generator=g)
    variances = pt.tempered_chains.var(dim=(1, 2))
    tol = 4 * math.sqrt(2 / n)  # relative standard error of a variance of n draws, 4 times
    assert tol < 0.05
    rel = variances / torch.tensor(temps, dtype=torch.float64) - 1
    assert (rel.abs() < tol).all(), variances


def test_cd_trainer_reported_energies_leave_batchnorm_statistics_alone():
    # the no-grad pos/neg energy forwards of ContrastiveDivergenceTrainer updated the
    # running statistics twice more per step than the loss and sampler did (6 vs 4 batches)
    def bn_energy():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1))
        return nn.Sequential(net, nn.Flatten(0))

    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    a, b = bn_energy(), bn_energy()
    ta = ContrastiveDivergenceTrainer(
        a, LangevinDynamics(a, 0.01), torch.optim.SGD(a.parameters(), lr=0.01), k_steps=2, seed=0
    )
    loss_b = ContrastiveDivergence(b, LangevinDynamics(b, 0.01), k_steps=2)
    tb = BaseTrainer(b, torch.optim.SGD(b.parameters(), lr=0.01), loss_b, seed=0)
    for _ in range(2):
        out = ta.train_step(x)
        tb.train_step(x)
    assert {"pos_energy", "neg_energy"} <= set(out)
    assert a[0][1].num_batches_tracked.item() == b[0][1].num_batches_tracked.item() == 8
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
