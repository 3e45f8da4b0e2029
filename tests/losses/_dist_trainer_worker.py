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
    res["global_rng_untouched"] = untouched
    res["timings"] = timings
    finish(res, out, rank)


if __name__ == "__main__":
    main()
