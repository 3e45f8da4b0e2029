"""Worker of tests/integration/test_distributed_losses.py (2 gloo ranks on CPU).

Launched by ``_support.launch.launch(..., torchrun=True)``, i.e. with
``torchrun --standalone --nproc-per-node=2 _dist_losses_worker.py OUT_DIR`` (the documented
launch path). Every rank runs every scenario in one process group and
saves ``OUT_DIR/rank<r>.pt``; the parent compares with single-process references built
from the helpers below (same model init, data and per-rank generator streams).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from _support.launch import finish, init_process_group
from torch import nn

import torchebm.couplings as C
import torchebm.losses as L
import torchebm.samplers as S
from torchebm.core import BaseScheduler, BaseTrainer
from torchebm.core import distributed as D
from torchebm.core.errors import ConfigurationError
from torchebm.models import MLPEnergy

DIM = 2
GLOBAL_BATCH = 8
SEED = 11


def init_model() -> MLPEnergy:
    m = MLPEnergy(DIM, (8, 8))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.4 * torch.randn(p.shape, generator=g))
    return m


def global_batch(k: int = 0, n: int = GLOBAL_BATCH) -> torch.Tensor:
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(200 + k)) * 0.6 + 0.3


def local_batch(k: int, rank: int, world: int) -> torch.Tensor:
    return global_batch(k).chunk(world)[rank]


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([[0.5, 0.1], [-0.2, 0.4]]))
        self.b = nn.Parameter(torch.tensor([0.1, -0.3]))

    def forward(self, x, t, **kw):
        return x @ self.a + self.b * t.reshape(-1, 1)


class OwnScoreDSM(L.DenoisingScoreMatching):
    def compute_score(self, x, noise=None, model_kwargs=None):
        x = (x if noise is None else x + noise).detach().requires_grad_(True)
        return torch.autograd.grad(self.model(x).sum(), x, create_graph=True)[0]


def make_loss(kind: str, model: nn.Module, sampler_model: nn.Module):
    if kind == "cd":
        return L.ContrastiveDivergence(
            model, S.LangevinDynamics(sampler_model, step_size=0.05), k_steps=3
        )
    if kind == "pcd":
        return L.PersistentContrastiveDivergence(
            model,
            S.LangevinDynamics(sampler_model, step_size=0.05),
            k_steps=2,
            buffer_size=16,
            new_sample_ratio=0.25,
        )
    if kind == "dsm":
        return L.DenoisingScoreMatching(model, noise_scale=0.2)
    if kind == "ssm":
        return L.SlicedScoreMatching(model, n_projections=2)
    if kind == "eqm":
        return L.EquilibriumMatchingLoss(model)
    if kind == "dsm_override":  # a compute_score written as in 0.8.9 (bypasses energy_gradient)
        return OwnScoreDSM(model, noise_scale=0.2)
    if kind == "eqm_dot":
        return L.EquilibriumMatchingLoss(model, energy_type="dot")
    if kind == "em":  # the warm-up phase: the flow term alone, through grad_x V
        return L.EnergyMatchingLoss(model, lambda_cd=0.0)
    raise ValueError(kind)


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for n, p in D.unwrap_model(module).named_parameters():
        g = p.grad
        if g is None:  # e.g. an output bias does not change grad_x E (score matching)
            out[n] = None
            continue
        out[n] = (g.full_tensor() if D._is_dtensor(g) else g).detach().clone()
    return out


class UserWrapper(nn.Module):
    """A user's module around the DDP model (as torch.compile's wrapper is)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


def ddp_loss_scenario(kind: str, rank: int, world: int) -> dict:
    wrapped = kind.endswith("_wrapped")
    kind = kind.removesuffix("_wrapped")
    model = Field() if kind.startswith("eqm") else init_model()
    ddp = nn.parallel.DistributedDataParallel(model)
    loss = make_loss(kind, UserWrapper(ddp) if wrapped else ddp, model)
    x = local_batch(0, rank, world)
    out = loss(x, generator=D.rank_generator(SEED))
    value, negatives = out if isinstance(out, tuple) else (out, None)
    value.backward()
    res = {"loss": value.detach(), "grads": _grads(model)}
    if negatives is not None:
        res["negatives"] = negatives
    if kind == "pcd":
        res["buffer"] = loss.replay_buffer.clone()
    return res


def ddp_refusal_scenario(rank: int, world: int) -> dict:
    """DDP(static_graph=True) does not average gradients taken through grad_x of the model
    (score matching, EqM's explicit energy, Energy Matching): each loss must raise on every
    rank (before any collective), also with the DDP model inside a user's wrapper."""
    out = {}
    for kind in ("dsm", "ssm", "eqm_dot", "em", "em_wrapped"):
        base = kind.removesuffix("_wrapped")
        model = Field() if base.startswith("eqm") else init_model()
        ddp = nn.parallel.DistributedDataParallel(model, static_graph=True)
        try:
            make_loss(base, UserWrapper(ddp) if base != kind else ddp, model)(
                local_batch(0, rank, world), generator=D.rank_generator(SEED)
            )
            out[kind] = ""
        except ValueError as exc:  # ConfigurationError
            out[kind] = str(exc)
    # the torch.func path: refused for training under DDP, a validation pass runs
    ddp = nn.parallel.DistributedDataParallel(init_model())
    functional = L.DenoisingScoreMatching(ddp, noise_scale=0.2, use_autograd=False)
    x = local_batch(0, rank, world)
    with torch.no_grad():
        out["functional_no_grad"] = functional(x, generator=D.rank_generator(SEED)).item()
    try:
        functional(x, generator=D.rank_generator(SEED))
        out["functional_train"] = ""
    except ValueError as exc:
        out["functional_train"] = str(exc)
    return out


def plain_sync_scenario(kind: str, rank: int, world: int) -> dict:
    """Score matching on a bare model with BaseTrainer's gradient all-reduce (one step,
    lr = 0), and the same through DDP with the trainer."""
    model = init_model()
    loss = make_loss(kind, model, model)
    t = BaseTrainer(model, torch.optim.SGD(model.parameters(), lr=0.0), loss, seed=SEED)
    out = t.train_step(local_batch(0, rank, world))
    inner = init_model()
    ddp = nn.parallel.DistributedDataParallel(inner)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.0)
    td = BaseTrainer(ddp, opt, make_loss(kind, ddp, inner), seed=SEED)
    td.train_step(local_batch(0, rank, world))
    return {
        "loss": out["loss"],
        "grads": _grads(model),
        "sync": t.sync_gradients,
        "ddp_trainer_grads": _grads(inner),
    }


def uneven_epochs_scenario(rank: int, world: int) -> dict:
    """Loaders of 2 + rank batches: every rank refuses the epoch (they waited in a gradient
    all-reduce the others never joined: gloo aborted the run); then equal loaders train."""
    model = init_model()
    t = BaseTrainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.01),
        make_loss("dsm", model, model),
        seed=SEED,
    )
    batches = [local_batch(k, rank, world) for k in range(2 + rank)]
    try:
        t.train_epoch(batches)
        refused = None
    except ConfigurationError as err:
        refused = str(err)
    metrics = t.train_epoch(batches[:2])
    return {"refused": refused, "steps": t.step, "equal_loss": metrics["loss"]}


def unloadable_checkpoint_scenario(rank: int, world: int, tmp: Path) -> dict:
    """A loss schedule holding a numpy array: ``save_checkpoint`` refuses the state on every
    rank (rank 0 alone raised, and the other ranks waited in its barrier until the timeout)."""
    import numpy as np

    class Table(BaseScheduler):
        def __init__(self, table):
            self.table = np.asarray(table)
            super().__init__(float(table[0]))

        def compute_value(self) -> float:
            return float(self.table[min(self.step_count, len(self.table) - 1)])

    model = init_model()
    loss = L.DenoisingScoreMatching(model, noise_scale=Table([0.5, 0.2]))
    t = BaseTrainer(model, torch.optim.SGD(model.parameters(), lr=0.0), loss, seed=SEED)
    try:
        t.save_checkpoint(tmp / "unloadable.pt")
        refused = None
    except TypeError as err:
        refused = str(err)
    return {"refused": refused, "written": (tmp / "unloadable.pt").exists()}


def fsdp_score_matching_scenario(kind: str, rank: int, world: int) -> dict:
    """Score matching under FSDP2: forward and backward inside ``unsharded`` (what
    BaseTrainer does by default for score-matching losses); and without it."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = init_model()
    fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
    loss = make_loss(kind, model, model)
    with D.unsharded(model):
        value = loss(local_batch(0, rank, world), generator=D.rank_generator(SEED))
        value.backward()
    res = {"loss": value.detach(), "grads": _grads(model)}
    trainer = BaseTrainer(model, torch.optim.SGD(model.parameters(), lr=0.0), loss, seed=SEED)
    out = trainer.train_step(local_batch(0, rank, world))
    res["trainer_unshards"] = trainer.unshard_during_step
    res["trainer_loss"] = out["loss"]
    res["trainer_grads"] = _grads(model)
    bare = make_loss(kind, model, model)
    try:  # without unsharded: the inner autograd.grad frees the weights the backward needs
        bare(local_batch(0, rank, world), generator=D.rank_generator(SEED)).backward()
        res["bare"] = "ok"
    except Exception as exc:
        res["bare"] = f"{type(exc).__name__}: {exc}"
    return res


def fsdp_cd_scenario(rank: int, world: int, use_unsharded: bool) -> dict:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = init_model()
    mesh = init_device_mesh("cpu", (world,))
    fully_shard(model, mesh=mesh)
    loss = make_loss("cd", model, model)
    x = local_batch(0, rank, world)
    if use_unsharded:
        with D.unsharded(model):
            value, negatives = loss(x, generator=D.rank_generator(SEED))
    else:
        value, negatives = loss(x, generator=D.rank_generator(SEED))
    value.backward()
    return {"loss": value.detach(), "negatives": negatives, "grads": _grads(model)}


def coupling_scenario(rank: int, world: int) -> dict:
    x0 = local_batch(1, rank, world)
    x1 = local_batch(2, rank, world) + 1.5
    res: dict = {}
    sk = C.SinkhornCoupling(reg=0.05, process_group=torch.distributed.group.WORLD)
    res["sinkhorn"] = tuple(sk(x0, x1, generator=D.rank_generator(SEED)))
    # global exact OT with the core shim: gather, solve the pooled problem, keep own rows
    all0, all1 = D.all_gather_cat(x0), D.all_gather_cat(x1)
    _, paired = C.ExactOTCoupling()(all0, all1)
    start = sum(D.gather_sizes(x0.shape[0])[:rank])
    res["exact_via_gather"] = (x0, paired[start : start + x0.shape[0]])
    try:
        ot = C.ExactOTCoupling(process_group=torch.distributed.group.WORLD)
        res["exact_pg"] = tuple(ot(x0, x1))
        # unequal per-rank batches (rank r keeps 3 + r rows): padded gather, own rows back
        u0, u1 = x0[: 3 + rank], x1[: 3 + rank]
        res["exact_pg_uneven"] = tuple(ot(u0, u1))
        g0, g1 = D.all_gather_cat(u0), D.all_gather_cat(u1)
        _, ref = C.ExactOTCoupling()(g0, g1)
        start = sum(D.gather_sizes(u0.shape[0])[:rank])
        res["exact_uneven_ref"] = (u0, ref[start : start + u0.shape[0]])
        # greedy is deterministic too: its global coupling (refused before) on the same rows
        greedy = C.GreedyCoupling(process_group=torch.distributed.group.WORLD)
        res["greedy_pg_uneven"] = tuple(greedy(u0, u1))
        _, gref = C.GreedyCoupling()(g0, g1)
        res["greedy_uneven_ref"] = (u0, gref[start : start + u0.shape[0]])
    except Exception as exc:  # reported by the parent
        res["exact_pg_error"] = f"{type(exc).__name__}: {exc}"
    return res


def eqm_global_coupling_scenario(rank: int, world: int) -> dict:
    """EqM whose coupling is global (Sinkhorn over the world): DDP gradients."""
    model = Field()
    ddp = nn.parallel.DistributedDataParallel(model)
    sk = C.SinkhornCoupling(reg=0.05, process_group=torch.distributed.group.WORLD)
    loss = L.EquilibriumMatchingLoss(ddp, coupling=sk)
    x = local_batch(0, rank, world)
    x0 = local_batch(3, rank, world)
    value = loss(x, x0=x0, generator=D.rank_generator(SEED))
    value.backward()
    return {"loss": value.detach(), "grads": _grads(model)}


def fsdp_trainer_scenario(kind: str, rank: int, world: int, tmp: Path) -> dict:
    """Train 2 steps, checkpoint, 2 more; a fresh trainer resumes from the checkpoint. With
    ``"dsm"`` the energy's output bias never gets a gradient (it does not move the score),
    so Adam holds no state for it: the checkpoint lacks that entry."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    def build():
        model = init_model()
        fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
        loss = make_loss(kind, model, model)
        opt = torch.optim.Adam(model.parameters(), lr=0.02)
        return BaseTrainer(model, opt, loss, seed=SEED), model

    def full(model):
        return {k: v.clone() for k, v in D.model_state_dict(model).items()}

    t, model = build()
    for k in range(2):
        t.train_step(local_batch(k, rank, world))
    t.save_checkpoint(tmp / f"fsdp_{kind}.pt")
    for k in range(2, 4):
        t.train_step(local_batch(k, rank, world))
    res = {"unbroken": full(model)}
    t2, model2 = build()
    t2.load_checkpoint(tmp / f"fsdp_{kind}.pt")
    for k in range(2, 4):
        t2.train_step(local_batch(k, rank, world))
    res["resumed"] = full(model2)
    if kind == "pcd":
        res["buffer_unbroken"] = t.loss_fn.replay_buffer.clone()
        res["buffer_resumed"] = t2.loss_fn.replay_buffer.clone()
    return res


def main() -> None:
    import torch.distributed as dist

    out = Path(sys.argv[1])
    rank, world = init_process_group()
    res: dict = {"timings": {}, "errors": {}}

    def run(name, fn, *args):
        t0 = time.perf_counter()
        try:
            res[name] = fn(*args)
        except Exception:  # keep going: the parent reports which scenario failed
            import traceback

            res["errors"][name] = traceback.format_exc()[-3000:]
            dist.barrier()
        res["timings"][name] = round(time.perf_counter() - t0, 2)

    kinds = ("cd", "pcd", "eqm", "eqm_dot", "em", "em_wrapped", "dsm", "ssm", "dsm_wrapped")
    for kind in (*kinds, "dsm_override"):
        run(f"ddp_{kind}", ddp_loss_scenario, kind, rank, world)
    run("ddp_refusals", ddp_refusal_scenario, rank, world)
    for kind in ("dsm", "ssm"):
        run(f"plain_{kind}", plain_sync_scenario, kind, rank, world)
    run("uneven_epochs", uneven_epochs_scenario, rank, world)
    run("unloadable_checkpoint", unloadable_checkpoint_scenario, rank, world, out)
    for kind in ("dsm", "ssm"):
        run(f"fsdp_{kind}", fsdp_score_matching_scenario, kind, rank, world)
    run("fsdp_cd", fsdp_cd_scenario, rank, world, False)
    run("fsdp_cd_unsharded", fsdp_cd_scenario, rank, world, True)
    run("couplings", coupling_scenario, rank, world)
    run("eqm_global", eqm_global_coupling_scenario, rank, world)
    run("fsdp_pcd_trainer", fsdp_trainer_scenario, "pcd", rank, world, out)
    run("fsdp_dsm_trainer", fsdp_trainer_scenario, "dsm", rank, world, out)
    finish(res, out, rank)


if __name__ == "__main__":
    main()
