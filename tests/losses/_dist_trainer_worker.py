"""Worker script for tests/losses/test_trainer_distributed.py (2 gloo ranks on CPU).

`BaseTrainer` under DDP, plain all-reduce and FSDP2 on the toy CD loss of
``tests/_support/dist_toys.py``; every rank writes ``<out>/rank<r>.pt``. Launched by
``_support.launch.launch``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from _support.dist_toys import ACCUM, LR, N_MICRO, SEED, ToyCD, init_model, local_batch
from _support.launch import finish, init_process_group
from torch import nn

from torchebm.core import distributed as D
from torchebm.losses import BaseTrainer


def wrong_wrapping(rank: int, world: int) -> str:
    """A DDP model whose loss holds the bare module would not sync: the trainer refuses it."""
    model = init_model()
    ddp = nn.parallel.DistributedDataParallel(model)
    try:
        BaseTrainer(ddp, torch.optim.SGD(ddp.parameters(), lr=0.1), ToyCD(model, model))
    except ValueError as exc:
        return str(exc)
    return "no error"


def _trainer(kind: str, rank: int, world: int):
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


class _Lin(nn.Module):
    """``E(x) = sum_j (W x + c)_j`` with ``W`` (2, 2), ``c`` (2,); set to constants."""

    def __init__(self):
        super().__init__()
        with torch.device("meta"):  # nn.Linear's default init would consume the global RNG
            lin = nn.Linear(2, 2)
        self.lin = lin.to_empty(device="cpu")
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[0.5, -1.0], [2.0, 0.25]]))
            self.lin.bias.fill_(0.1)

    def forward(self, x):
        return self.lin(x).sum(-1)


class _LogZLoss(nn.Module):
    """``L = mean E(x) + 3 log_z mean(x)`` with a learnable ``log_z`` outside the model."""

    def __init__(self, model: nn.Module, log_z: float):
        super().__init__()
        self.model = model
        self.log_z = nn.Parameter(torch.tensor(log_z))

    def forward(self, x):
        return self.model(x).mean() + 3.0 * self.log_z * x.mean()


def outside_parameter(kind: str, rank: int, world: int, max_norm: float | None) -> dict:
    """One SGD step of a loss with its own parameter; rank r's batch is ``(r + 1) X0``."""
    model = _Lin()
    if kind == "ddp":
        wrapped: nn.Module = nn.parallel.DistributedDataParallel(model)
    else:
        wrapped = model
        if kind == "fsdp":
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
    loss = _LogZLoss(wrapped, log_z=float(rank))  # rank 0's value must win
    opt = torch.optim.SGD([*wrapped.parameters(), loss.log_z], lr=1.0)
    trainer = BaseTrainer(wrapped, opt, loss, max_grad_norm=max_norm)
    start = loss.log_z.detach().clone()
    sizes: list[int] = []  # what the trainer all-reduces in the step (DDP/FSDP: not the model)
    reduce = D.all_reduce_mean

    def counting(x, group=None):
        sizes.append(x.numel())
        return reduce(x, group)

    D.all_reduce_mean = counting
    try:
        trainer.train_step((rank + 1) * torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
    finally:
        D.all_reduce_mean = reduce

    def full(t):
        return t.full_tensor() if D._is_dtensor(t) else t.detach().clone()

    grads = [full(p.grad) for p in model.parameters()] + [loss.log_z.grad.clone()]
    return {"start": start, "grads": grads, "log_z": loss.log_z.detach().clone(), "sizes": sizes}


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


def main() -> None:
    out = Path(sys.argv[1])
    rank, world = init_process_group()
    res: dict = {}
    untouched: dict = {}
    timings: dict = {}

    def run(name, fn, *args):
        before = torch.get_rng_state()
        t0 = time.perf_counter()
        res[name] = fn(*args)
        timings[name] = round(time.perf_counter() - t0, 2)
        untouched[name] = bool(torch.equal(before, torch.get_rng_state()))

    run("wrong_wrapping", wrong_wrapping, rank, world)
    for kind in ("ddp", "plain", "fsdp"):
        run(f"trainer_{kind}", trainer_scenarios, kind, rank, world, out)
        for max_norm in (None, 0.5):
            run(f"outside_{kind}_{max_norm}", outside_parameter, kind, rank, world, max_norm)
    res["global_rng_untouched"] = untouched
    res["timings"] = timings
    finish(res, out, rank)


if __name__ == "__main__":
    main()
