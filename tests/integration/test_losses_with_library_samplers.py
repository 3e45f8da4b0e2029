"""Losses run with the library's own samplers (torchebm-losses does not depend on
torchebm-samplers, so these live with the tests that install every piece)."""

from __future__ import annotations

import math

import pytest
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


def test_cd_trainer_takes_batches_of_another_dtype_as_its_loss_does():
    # the loss casts its input; the trainer's reported energies called the model on the
    # uncast batch: a float64 (numpy) batch failed with "expects x of ... float32" after the
    # negative phase had already updated the replay buffer
    def energy(dtype):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
        return net.to(dtype)

    x64 = torch.randn(16, 2, dtype=torch.float64, generator=gen(0))
    a, b = energy(torch.float32), energy(torch.float32)
    ta = ContrastiveDivergenceTrainer(
        a, LangevinDynamics(a, 0.01), torch.optim.SGD(a.parameters(), lr=0.01), k_steps=2, seed=0
    )
    tb = BaseTrainer(
        b,
        torch.optim.SGD(b.parameters(), lr=0.01),
        ContrastiveDivergence(b, LangevinDynamics(b, 0.01), k_steps=2),
        seed=0,
    )
    out, ref = ta.train_step(x64), tb.train_step(x64)
    assert torch.equal(out["loss"], ref["loss"]) and out["pos_energy"].dtype == torch.float32
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    # a float64 trainer (its model moved to float64) on float32 batches
    c = energy(torch.float32)
    tc = ContrastiveDivergenceTrainer(
        c, LangevinDynamics(c, 0.01), k_steps=2, seed=0, dtype=torch.float64
    )
    out = tc.train_step(x64.float())
    assert out["neg_energy"].dtype == torch.float64 and math.isfinite(float(out["loss"]))


def test_cd_losses_train_on_data_made_under_inference_mode():
    # "Inference tensors cannot be saved for backward": data drawn by a sampler under
    # torch.inference_mode() (or negatives handed to compute_loss) failed in backward
    def energy():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))

    with torch.inference_mode():
        data = torch.randn(16, 2, generator=gen(0))
    makers = {
        "cd": lambda m: ContrastiveDivergence(m, LangevinDynamics(m, 0.01), k_steps=2),
        "pcd": lambda m: ContrastiveDivergence(
            m, LangevinDynamics(m, 0.01), k_steps=2, persistent=True, buffer_size=32
        ),
        "ptcd": lambda m: ParallelTemperingCD(m, LangevinDynamics(m, 0.01), k_steps=2),
    }
    for name, make in makers.items():
        grads = []
        for x in (data, data.clone()):  # the inference tensor, then a normal copy
            model = energy()
            make(model)(x, generator=gen(1))[0].backward()
            grads.append([p.grad for p in model.parameters()])
        for a, b in zip(*grads, strict=True):
            assert torch.equal(a, b), name


class _ClassMeans(nn.Module):
    """E(x | y) = |x - mu_y|^2 / 2 (the class means as parameters)."""

    def __init__(self):
        super().__init__()
        self.mu = nn.Parameter(torch.tensor([-2.0, 0.0, 3.0]))

    def forward(self, x, y):
        return 0.5 * (x - self.mu[y][:, None]).square().sum(1)


def test_persistent_chains_refuse_per_sample_conditioning():
    # the replay buffer keeps no labels: with a shuffled loader a chain run under label a was
    # continued under the next batch's label of its row; trained class means came out
    # (-2.6, -0.2, 10.6) for (-2, 0, 3), without a word
    from torchebm.core.errors import ConfigurationError
    from torchebm.losses import PersistentContrastiveDivergence

    m = _ClassMeans()
    x, y = torch.randn(30, 2, generator=gen(0)), torch.arange(30) % 3
    for loss in (
        PersistentContrastiveDivergence(m, LangevinDynamics(m, 0.01), k_steps=2, buffer_size=60),
        ContrastiveDivergence(m, LangevinDynamics(m, 0.01), k_steps=2, persistent=True),
    ):
        with pytest.raises(ConfigurationError, match=r"persistent chains got per-sample .*\['y'\]"):
            loss(x, model_kwargs={"y": y})
        assert loss.replay_buffer is None  # refused before the buffer was made

    # the same for every sample (one context value) is taken, by the burn-in too (it called
    # the model without its conditioning: "calls model(x) but ... refuses it")
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor(1.0))

        def forward(self, x, scale):
            return 0.5 * self.a * scale * x.square().sum(1)

    s = Scaled()
    loss = ContrastiveDivergence(
        s, LangevinDynamics(s, 0.01), k_steps=2, persistent=True, buffer_size=60
    )
    assert loss.init_steps > 0
    loss(x, model_kwargs={"scale": torch.tensor(2.0)}, generator=gen(1))[0].backward()
    assert loss.replay_buffer.shape == (60, 2) and s.a.grad is not None


def test_persistent_chains_refuse_a_conditioning_that_changes_between_calls():
    # batches of one class each, the class passed as shared conditioning: the chains still
    # changed label between calls (class means learned (-6.4, -0.5, 7.2) for (-2, 0, 3))
    from torchebm.core.errors import ConfigurationError

    class Shifted(nn.Module):
        def __init__(self):
            super().__init__()
            self.mu = nn.Parameter(torch.tensor([-2.0, 0.0, 3.0]))

        def forward(self, x, cls):
            return 0.5 * (x - self.mu[cls]).square().sum(1)

    m = Shifted()
    loss = ContrastiveDivergence(
        m, LangevinDynamics(m, 0.01), k_steps=2, persistent=True, init_steps=0
    )
    x = torch.randn(16, 2, generator=gen(0))
    loss(x, model_kwargs={"cls": torch.tensor(0)})
    loss(x, model_kwargs={"cls": torch.tensor(0)})  # the same condition again: fine
    with pytest.raises(ConfigurationError, match="a conditioning other than the one its chains"):
        loss(x, model_kwargs={"cls": torch.tensor(1)})
    loss.replay_buffer = None  # new chains may take a new conditioning
    loss(x, model_kwargs={"cls": torch.tensor(1)})
