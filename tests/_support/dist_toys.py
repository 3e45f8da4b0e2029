"""The toy model, loss and data shared by the 2-rank workers and their single-process oracles.

`reference_train` is written independently of `BaseTrainer`: it is the oracle for the
distributed trainers (tests/losses/test_trainer_distributed.py) and `ToyCD` gives the DDP
gradients of tests/core/test_distributed.py.
"""

from __future__ import annotations

import torch
from torch import nn

from torchebm.core import BaseModel, ExponentialDecayScheduler, Schedulable, TorchEBMModule
from torchebm.core import distributed as D

DIM = 2
GLOBAL_BATCH = 8
N_MICRO = 4  # micro-steps per phase
ACCUM = 2
LR = 0.05
SEED = 7


class ToyEnergy(BaseModel):
    """Small MLP energy ``E(x) = MLP(x)``, shape ``(B,)``."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(DIM, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x).sum(-1)


class ToyCD(Schedulable, TorchEBMModule):
    """A contrastive-divergence-like loss with a per-rank replay buffer and a scheduler.

    Negatives: start ``s = x`` (or ``(x + buffer[:B]) / 2`` once the buffer exists), one
    gradient step on the bare model, plus ``noise * xi`` with ``xi`` from ``generator``.
    Loss: ``mean E(x) - mean E(neg) + 0.1 mean E(x)^2``.
    """

    def __init__(self, model: nn.Module, sampler_model: nn.Module):
        super().__init__()
        self.model = model
        self.sampler_model = sampler_model
        self.register_buffer("replay", None)
        self._register_param("noise", ExponentialDecayScheduler(0.5, 0.9), positive=True)

    def negatives(self, x, generator=None):
        start = x if self.replay is None else 0.5 * (x + self.replay[: x.shape[0]])
        grad = self.sampler_model.gradient(start)
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return (start - 0.1 * grad + self.get_scheduled_value("noise") * xi).detach()

    def compute(self, x, neg):
        e_pos = self.model(x)
        e_neg = self.model(neg)
        return e_pos.mean() - e_neg.mean() + 0.1 * (e_pos**2).mean()

    def forward(self, x, generator=None):
        neg = self.negatives(x, generator)
        self.replay = neg.clone()
        return self.compute(x, neg)


def init_model() -> ToyEnergy:
    """Identical weights on every rank and in the parent (explicit generator, no global RNG)."""
    with torch.device("meta"):  # nn.Linear's default init would consume the global RNG
        m = ToyEnergy()
    m = m.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return m


def global_batch(k: int) -> torch.Tensor:
    return torch.randn(GLOBAL_BATCH, DIM, generator=torch.Generator().manual_seed(100 + k))


def local_batch(k: int, rank: int, world: int) -> torch.Tensor:
    return global_batch(k).chunk(world)[rank]


def reference_train(n_micro: int, world: int, accum: int = ACCUM) -> dict[str, torch.Tensor]:
    """Single process, concatenated batches, the ranks' generator streams concatenated.

    Written independently of BaseTrainer: the oracle for the distributed trainers.
    """
    model = init_model()
    loss = ToyCD(model, model)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gens = [D.rank_generator(SEED, rank=r) for r in range(world)]
    replays = [None] * world
    for k in range(n_micro):
        if k % accum == 0:
            opt.zero_grad()
        negs = []
        for r in range(world):
            loss.replay = replays[r]
            negs.append(loss.negatives(local_batch(k, r, world), gens[r]))
            replays[r] = negs[-1].clone()
        (loss.compute(global_batch(k), torch.cat(negs)) / accum).backward()
        if k % accum == accum - 1:
            opt.step()
            loss.step_schedulers()
    return {n: p.detach().clone() for n, p in model.named_parameters()}
