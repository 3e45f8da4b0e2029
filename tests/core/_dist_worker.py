"""Worker script for tests/core/test_distributed.py (2 gloo ranks on CPU).

Not collected by pytest (no ``test_`` prefix). Every rank runs all scenarios in one
process group (one launch keeps the suite fast) and writes ``<out>/rank<r>.pt``; the
parent test recomputes the same quantities in a single process and compares. The toy
model, loss and data come from ``tests/_support/dist_toys.py``.

Usage: launched by ``_support.launch.launch`` (``RANK``/``WORLD_SIZE`` and
``TORCHEBM_TEST_INIT`` set, ``tests/`` on ``PYTHONPATH``), or
``PYTHONPATH=tests torchrun --standalone --nproc-per-node=2 tests/core/_dist_worker.py OUT``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.distributed.fsdp as torch_fsdp
from _support.dist_toys import SEED, ToyCD, init_model, local_batch
from _support.launch import finish, init_process_group
from torch import nn

from torchebm.core import distributed as D
from torchebm.core.errors import ShapeError

#: FSDP2's public entry point, ``torch.distributed.fsdp.fully_shard``, exists from torch 2.6;
#: on an older torch (the declared floor is 2.4) the FSDP2 scenario is not run.
HAS_FSDP2 = hasattr(torch_fsdp, "fully_shard")


# ---------------------------------------------------------------------------- scenarios
def shim_scenarios(rank: int, world: int) -> dict:
    res: dict = {"rank": D.get_rank(), "world": D.get_world_size(), "dist": D.is_distributed()}
    x = torch.arange((rank + 2) * 3, dtype=torch.float32).reshape(rank + 2, 3) + 100 * rank
    res["gather_uneven"] = D.all_gather_cat(x)
    res["gather_dim1"] = D.all_gather_cat(torch.full((2, rank + 1), float(rank)), dim=1)
    res["sizes"] = D.gather_sizes(rank + 2)
    # the same bytes in another shape or dtype: all_gather alone reinterprets them silently
    for key, mine in (
        ("gather_shape_mismatch", [torch.zeros(2, 6), torch.zeros(2, 2, 3)][rank % 2]),
        (
            "gather_dtype_mismatch",
            [torch.zeros(2, 6), torch.zeros(2, 3, dtype=torch.float64)][rank % 2],
        ),
    ):
        try:
            res[key] = D.all_gather_cat(mine)
        except ShapeError as err:  # every rank raises; the next collectives still run
            res[key] = str(err)

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
    # loading a full state dict into the sharded model leaves the caller's dict as it was
    # (set_model_state_dict replaced its entries by DTensor shards)
    full = {k: v.clone() for k, v in plain.state_dict().items()}
    D.load_model_state_dict(model, full)
    return {
        "caller_dict_types": sorted({type(v).__name__ for v in full.values()}),
        "loaded_equal": all(torch.equal(v, full[k]) for k, v in D.model_state_dict(model).items()),
        "inside": inside,
        "after": after,
        "grad_diff": float((g1 - plain.gradient(x)).abs().max()),
        "grad_repeat": float((g1 - g2).abs().max()),
        "sharded": D.is_sharded(model),
    }


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

    run("shim", shim_scenarios, rank, world)
    run("ddp_grads", ddp_gradients, rank, world)
    if HAS_FSDP2:
        run("unsharded", unsharded_scenario, rank, world)
    res["global_rng_untouched"] = untouched
    res["timings"] = timings
    finish(res, out, rank)


if __name__ == "__main__":
    main()
