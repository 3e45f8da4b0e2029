"""Worker script for tests/core/test_distributed.py, launched with ``torchrun`` (gloo, CPU).

Not collected by pytest (no ``test_`` prefix). Every rank runs all scenarios in one
process group (one launch keeps the suite fast) and writes ``<out>/rank<r>.pt``; the
parent test recomputes the same quantities in a single process and compares. The toy
model, loss and data below are shared by the worker and the single-process references.

Usage: ``torchrun --standalone --nproc-per-node=2 tests/core/_dist_worker.py OUT_DIR``, or
with ``RANK``/``WORLD_SIZE`` and ``TORCHEBM_TEST_INIT`` (an ``init_method`` such as
``file:///tmp/x``) set by the test's own launcher, which avoids torchrun's agent process.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed.fsdp as torch_fsdp
from torch import nn

from torchebm.core import BaseModel, ExponentialDecayScheduler, Schedulable, TorchEBMModule
from torchebm.core import distributed as D

#: FSDP2's public entry point, ``torch.distributed.fsdp.fully_shard``, exists from torch 2.6;
#: on an older torch (the declared floor is 2.4) the FSDP2 scenarios are not run.
HAS_FSDP2 = hasattr(torch_fsdp, "fully_shard")
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


# ---------------------------------------------------------------------------- scenarios
def shim_scenarios(rank: int, world: int) -> dict:
    res: dict = {"rank": D.get_rank(), "world": D.get_world_size(), "dist": D.is_distributed()}
    x = torch.arange((rank + 2) * 3, dtype=torch.float32).reshape(rank + 2, 3) + 100 * rank
    res["gather_uneven"] = D.all_gather_cat(x)
    res["gather_dim1"] = D.all_gather_cat(torch.full((2, rank + 1), float(rank)), dim=1)
    res["sizes"] = D.gather_sizes(rank + 2)

    xr = torch.randn(3, 2, generator=D.rank_generator(1)).requires_grad_()
    full = D.all_gather_cat(xr, differentiable=True)
    w = torch.arange(full.numel(), dtype=torch.float32).reshape(full.shape) * (rank + 1)
    (full * w).sum().backward()
    res["diff_full"] = full.detach()
    res["diff_grad"] = xr.grad.clone()

    res["bcast_obj"] = D.broadcast_object({"from": rank, "items": [1, 2]} if rank == 1 else None, 1)
    t = torch.full((3,), float(rank))
    res["bcast_tensor"] = D.broadcast_tensor(t, src=1).clone()
    res["mean"] = D.all_reduce_mean(torch.tensor([float(rank), 2.0 * rank]))
    res["draw"] = torch.randn(5, generator=D.rank_generator(123))
    return res


def ddp_gradients(rank: int, world: int) -> dict:
    model = init_model()
    ddp = nn.parallel.DistributedDataParallel(model)
    loss = ToyCD(ddp, model)
    out = loss(local_batch(0, rank, world), generator=D.rank_generator(SEED))
    out.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def wrong_wrapping(rank: int, world: int) -> str:
    """A DDP model whose loss holds the bare module would not sync: the trainer refuses it."""
    from torchebm.core import BaseTrainer

    model = init_model()
    ddp = nn.parallel.DistributedDataParallel(model)
    try:
        BaseTrainer(ddp, torch.optim.SGD(ddp.parameters(), lr=0.1), ToyCD(model, model))
    except ValueError as exc:
        return str(exc)
    return "no error"


def _trainer(kind: str, rank: int, world: int):
    from torchebm.core import BaseTrainer

    model = init_model()
    if kind == "ddp":
        wrapped = nn.parallel.DistributedDataParallel(model)
        loss = ToyCD(wrapped, model)
    elif kind == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        fully_shard(model.net[0], mesh=mesh)
        fully_shard(model, mesh=mesh)
        wrapped = model
        loss = ToyCD(model, model)
    else:  # plain model, trainer all-reduces gradients
        wrapped = model
        loss = ToyCD(model, model)
    opt = torch.optim.Adam(wrapped.parameters(), lr=LR)
    return BaseTrainer(wrapped, opt, loss, grad_accum_steps=ACCUM, seed=SEED), model


def _full_params(model: nn.Module) -> dict[str, torch.Tensor]:
    sd = D.model_state_dict(model)  # collective for FSDP; full on rank 0
    return {k: v.detach().clone() for k, v in sd.items()}


def trainer_scenarios(kind: str, rank: int, world: int, tmp: Path) -> dict:
    trainer, model = _trainer(kind, rank, world)
    for k in range(N_MICRO):
        trainer.train_step(local_batch(k, rank, world))
    res = {"after": _full_params(model), "step": trainer.step, "sync": trainer.sync_gradients}
    ckpt = tmp / f"{kind}.pt"
    trainer.save_checkpoint(ckpt)
    for k in range(N_MICRO, 2 * N_MICRO):
        trainer.train_step(local_batch(k, rank, world))
    res["unbroken"] = _full_params(model)
    res["replay_unbroken"] = trainer.loss_fn.replay.clone()

    resumed, model2 = _trainer(kind, rank, world)
    resumed.load_checkpoint(ckpt)
    for k in range(N_MICRO, 2 * N_MICRO):
        resumed.train_step(local_batch(k, rank, world))
    res["resumed"] = _full_params(model2)
    res["replay_resumed"] = resumed.loss_fn.replay.clone()
    res["resumed_step"] = resumed.step
    return res


def unsharded_scenario(rank: int, world: int) -> dict:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = init_model()
    mesh = init_device_mesh("cpu", (world,))
    fully_shard(model.net[0], mesh=mesh)
    fully_shard(model, mesh=mesh)
    x = local_batch(0, rank, world)
    plain = init_model()
    with D.unsharded(model):
        inside = [type(p).__name__ for p in model.parameters()]
        g1 = model.gradient(x)
        g2 = model.gradient(x)
    after = [type(p).__name__ for p in model.parameters()]
    return {
        "inside": inside,
        "after": after,
        "grad_diff": float((g1 - plain.gradient(x)).abs().max()),
        "grad_repeat": float((g1 - g2).abs().max()),
        "sharded": D.is_sharded(model),
    }


def main() -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    init = os.environ.get("TORCHEBM_TEST_INIT")
    if init:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    else:
        dist.init_process_group("gloo")  # env:// as set by torchrun
    rank, world = dist.get_rank(), dist.get_world_size()
    untouched = {}

    timings = {}

    def run(name, fn, *args):
        before = torch.get_rng_state()
        t0 = time.perf_counter()
        res[name] = fn(*args)
        timings[name] = round(time.perf_counter() - t0, 2)
        untouched[name] = bool(torch.equal(before, torch.get_rng_state()))

    res: dict = {}
    run("shim", shim_scenarios, rank, world)
    run("ddp_grads", ddp_gradients, rank, world)
    run("wrong_wrapping", wrong_wrapping, rank, world)
    for kind in ("ddp", "plain", "fsdp") if HAS_FSDP2 else ("ddp", "plain"):
        run(f"trainer_{kind}", trainer_scenarios, kind, rank, world, out)
    if HAS_FSDP2:
        run("unsharded", unsharded_scenario, rank, world)
    res["global_rng_untouched"] = untouched
    res["timings"] = timings
    torch.save(res, out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    # leave without interpreter teardown: gloo's C++ threads can abort (std::terminate) while
    # static objects are destroyed, after the results are safely written
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
