"""The library's losses and couplings under DDP and FSDP2: 2 gloo ranks on CPU via torchrun.

One ``torchrun --standalone --nproc-per-node=2`` launch runs every scenario of
``_dist_losses_worker.py``; each test compares the ranks' results with a single-process
reference on the concatenated batch, replaying each rank's generator stream with
``rank_generator(seed, rank=r)``.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import pytest
import torch
from _support.launch import launch

import torchebm.couplings as C
import torchebm.losses as L
from torchebm.core import distributed as D

HERE = Path(__file__).resolve().parent
WORLD = 2
GRAD_TOL = 1e-6  # float32, reduction order of DDP's average vs the single-process mean


def _load_worker():
    spec = importlib.util.spec_from_file_location(
        "_torchebm_losses_worker", HERE / "_dist_losses_worker.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


W = _load_worker()
pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def ranks():
    with tempfile.TemporaryDirectory() as d:
        res = launch(HERE / "_dist_losses_worker.py", Path(d), WORLD, torchrun=True)
    for r in res:
        assert not r["errors"], "\n".join(f"{k}:\n{v}" for k, v in r["errors"].items())
    return res


def _gen(r: int) -> torch.Generator:
    return D.rank_generator(W.SEED, rank=r)


def _maxdiff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    worst = 0.0
    for k in a:
        if a[k] is None or b[k] is None:  # no gradient: equal to a zero one (DDP's for an
            other = b[k] if a[k] is None else a[k]  # Energy Matching output bias)
            assert other is None or not other.any(), k
            continue
        worst = max(worst, (a[k] - b[k]).abs().max().item())
    return worst


def reference(kind: str):
    """Single process: one loss object per rank (own PCD buffer), same model; the mean of
    the per-rank losses equals the loss on the concatenated batch (equal batch sizes)."""
    kind = kind.removesuffix("_wrapped")
    model = W.Field() if kind.startswith("eqm") else W.init_model()
    losses = [W.make_loss(kind, model, model) for _ in range(WORLD)]
    outs = [losses[r](W.local_batch(0, r, WORLD), generator=_gen(r)) for r in range(WORLD)]
    values = [o[0] if isinstance(o, tuple) else o for o in outs]
    (sum(values) / WORLD).backward()
    return model, losses, outs, W._grads(model)


@pytest.mark.parametrize(
    "kind",
    [
        "cd",
        "pcd",
        "eqm",
        "eqm_dot",
        "em",
        "em_wrapped",
        "dsm",
        "ssm",
        "dsm_wrapped",
        "dsm_override",
    ],
)
def test_ddp_gradients_equal_single_process_on_the_concatenated_batch(ranks, kind):
    """``em``, ``dsm``, ``ssm``: losses trained through grad_x of an MLP energy whose output
    bias gets no gradient that way: DDP left every rank's gradient unaveraged (and the next
    step failed), also with the DDP model inside a user's wrapper (``_wrapped``) and with a
    ``compute_score`` override that takes the gradient itself (``dsm_override``)."""
    model, losses, outs, ref = reference(kind)
    for r, res in enumerate(ranks):
        d = res[f"ddp_{kind}"]
        diff = _maxdiff(d["grads"], ref)
        assert diff < GRAD_TOL, f"{kind} rank {r}: max |grad diff| = {diff:.2e}"
        local = outs[r][0] if isinstance(outs[r], tuple) else outs[r]
        assert torch.allclose(d["loss"], local.detach(), atol=1e-6)
        if kind in ("cd", "pcd"):
            assert torch.equal(d["negatives"], outs[r][1])  # rank stream replayed exactly
    assert _maxdiff(ranks[0][f"ddp_{kind}"]["grads"], ranks[1][f"ddp_{kind}"]["grads"]) == 0.0


@pytest.mark.parametrize("kind", ["dsm", "ssm", "eqm_dot", "em", "em_wrapped"])
def test_losses_through_grad_x_refuse_ddp_static_graph(ranks, kind):
    """Under DDP(static_graph=True) the losses trained through grad_x of the model kept each
    rank's own gradient, silently."""
    for res in ranks:
        msg = res["ddp_refusals"][kind]
        assert "static_graph=True) does not average" in msg, (kind, msg)


def test_score_matching_through_torch_func_validates_under_ddp_and_refuses_training(ranks):
    model = W.init_model()
    loss = L.DenoisingScoreMatching(model, noise_scale=0.2, use_autograd=False)
    for r, res in enumerate(ranks):
        d = res["ddp_refusals"]
        assert "use_autograd=False" in d["functional_train"]
        with torch.no_grad():
            ref = loss(W.local_batch(0, r, WORLD), generator=_gen(r)).item()
        assert abs(d["functional_no_grad"] - ref) < 1e-6


def test_trainer_refuses_loaders_of_different_lengths_on_every_rank(ranks):
    for res in ranks:
        d = res["uneven_epochs"]
        assert d["refused"] is not None and "[2, 3] (by rank)" in d["refused"], d
        assert "DistributedSampler" in d["refused"]
        assert d["steps"] == 2  # nothing trained in the refused epoch, then 2 equal batches
    assert ranks[0]["uneven_epochs"]["equal_loss"] == ranks[1]["uneven_epochs"]["equal_loss"]


def test_an_unloadable_checkpoint_is_refused_on_every_rank(ranks):
    for res in ranks:
        d = res["unloadable_checkpoint"]
        assert d["refused"] is not None and "ranks[0].loss holds a value" in d["refused"], d
        assert not d["written"]


@pytest.mark.parametrize("kind", ["dsm", "ssm"])
def test_score_matching_with_trainer_all_reduce_equals_single_process(ranks, kind):
    """BaseTrainer's plain mode (bare model, one flat all-reduce) and DDP with the trainer
    both give the single-process gradient of the concatenated batch."""
    _, _, outs, ref = reference(kind)
    for r, res in enumerate(ranks):
        d = res[f"plain_{kind}"]
        assert d["sync"] is True
        diff = _maxdiff(d["grads"], ref)
        assert diff < GRAD_TOL, f"{kind} rank {r}: {diff:.2e}"
        assert torch.allclose(d["loss"], outs[r].detach(), atol=1e-6)
        diff = _maxdiff(d["ddp_trainer_grads"], ref)
        assert diff < GRAD_TOL, f"{kind} DDP trainer rank {r}: {diff:.2e}"


@pytest.mark.parametrize("kind", ["dsm", "ssm"])
def test_fsdp2_score_matching_inside_unsharded_equals_single_process(ranks, kind):
    _, _, outs, ref = reference(kind)
    for r, res in enumerate(ranks):
        d = res[f"fsdp_{kind}"]
        for grads, loss in ((d["grads"], d["loss"]), (d["trainer_grads"], d["trainer_loss"])):
            diff = _maxdiff(grads, ref)
            assert diff < GRAD_TOL, f"{kind} rank {r}: {diff:.2e}"
            assert torch.allclose(loss, outs[r].detach(), atol=1e-6)
        assert d["trainer_unshards"] is True


@pytest.mark.parametrize("kind", ["dsm", "ssm"])
def test_score_matching_under_fsdp2_without_unsharded_works_or_says_why(ranks, kind):
    """Outside ``unsharded`` the loss refuses with a message naming the fix, instead of an
    opaque storage error in backward."""
    msg = ranks[0][f"fsdp_{kind}"]["bare"]
    assert msg.startswith("RuntimeError") and "unsharded" in msg, msg


def test_cd_gradient_is_the_concatenated_batch_gradient(ranks):
    """Literally: CD's compute_loss on the concatenated data and negatives of both ranks."""
    model = W.init_model()
    loss = W.make_loss("cd", model, model)
    x = W.global_batch(0)
    neg = torch.cat([ranks[r]["ddp_cd"]["negatives"] for r in range(WORLD)])
    loss.compute_loss(x, neg, model_kwargs={}).backward()
    diff = _maxdiff(ranks[0]["ddp_cd"]["grads"], W._grads(model))
    assert diff < GRAD_TOL, diff


def test_pcd_keeps_one_decorrelated_buffer_per_rank(ranks):
    _, losses, _, _ = reference("pcd")
    b0, b1 = (ranks[r]["ddp_pcd"]["buffer"] for r in range(WORLD))
    assert b0.shape == b1.shape == (16, W.DIM)
    assert not torch.equal(b0, b1)
    for r in range(WORLD):
        assert torch.equal(ranks[r]["ddp_pcd"]["buffer"], losses[r].replay_buffer)


@pytest.mark.parametrize("variant", ["fsdp_cd", "fsdp_cd_unsharded"])
def test_fsdp2_cd_gradients_equal_single_process(ranks, variant):
    _, _, outs, ref = reference("cd")
    for r, res in enumerate(ranks):
        d = res[variant]
        diff = _maxdiff(d["grads"], ref)  # full_tensor() of the sharded gradients
        assert diff < GRAD_TOL, f"{variant} rank {r}: {diff:.2e}"
        assert torch.allclose(d["negatives"], outs[r][1], atol=1e-6)


def test_global_sinkhorn_coupling_equals_single_process_coupling(ranks):
    x0 = torch.cat([ranks[r]["couplings"]["sinkhorn"][0] for r in range(WORLD)])
    x1 = torch.cat([ranks[r]["couplings"]["sinkhorn"][1] for r in range(WORLD)])
    a0, a1 = W.global_batch(1), W.global_batch(2) + 1.5
    assert torch.equal(x0, a0)  # x0 order is never changed
    # rank 0's draw is broadcast: the single-process coupling with rank 0's stream
    ref = C.SinkhornCoupling(reg=0.05)(a0, a1, generator=_gen(0)).x1
    assert torch.equal(x1, ref)


def test_global_exact_ot_via_all_gather_equals_single_process(ranks):
    x0 = torch.cat([ranks[r]["couplings"]["exact_via_gather"][0] for r in range(WORLD)])
    x1 = torch.cat([ranks[r]["couplings"]["exact_via_gather"][1] for r in range(WORLD)])
    a0, a1 = W.global_batch(1), W.global_batch(2) + 1.5
    ref = C.ExactOTCoupling()(a0, a1).x1
    assert torch.equal(x0, a0) and torch.equal(x1, ref)
    # global pairing is a permutation of the pooled targets and beats per-rank pairing
    assert sorted(x1[:, 0].tolist()) == sorted(a1[:, 0].tolist())
    local = torch.cat(
        [C.ExactOTCoupling()(a0.chunk(2)[r], a1.chunk(2)[r]).x1 for r in range(WORLD)]
    )
    assert ((x0 - x1) ** 2).sum() <= ((x0 - local) ** 2).sum() + 1e-6


def test_exact_ot_coupling_with_a_process_group_equals_pooled_coupling(ranks):
    """ExactOTCoupling(process_group=WORLD) pairs each rank's rows exactly as the
    single-process coupling of the concatenated batch does, also for unequal batches."""
    for r in range(WORLD):
        res = ranks[r]["couplings"]
        assert "exact_pg" in res, res.get("exact_pg_error")
        via_gather = res["exact_via_gather"]
        assert torch.equal(res["exact_pg"][0], via_gather[0])
        assert torch.equal(res["exact_pg"][1], via_gather[1])
        assert torch.equal(res["exact_pg_uneven"][0], res["exact_uneven_ref"][0])
        assert torch.equal(res["exact_pg_uneven"][1], res["exact_uneven_ref"][1])
        assert res["exact_pg_uneven"][0].shape[0] == 3 + r
        assert torch.equal(res["greedy_pg_uneven"][1], res["greedy_uneven_ref"][1])


def test_eqm_with_global_coupling_under_ddp(ranks):
    """EqM with a world-wide Sinkhorn coupling: DDP gradients equal the single-process
    gradient with the pooled pairing and each rank's own flow times."""
    model = W.Field()
    loss = L.EquilibriumMatchingLoss(model, coupling="independent")
    xs = [W.local_batch(0, r, WORLD) for r in range(WORLD)]
    x0s = [W.local_batch(3, r, WORLD) for r in range(WORLD)]
    all0, all1 = torch.cat(x0s), torch.cat(xs)
    sk = C.SinkhornCoupling(reg=0.05)
    cost = sk.compute_cost(all0, all1)
    gens = [_gen(r) for r in range(WORLD)]
    idx = [sk.solve(cost, g) for g in gens]  # every rank draws; rank 0's indices are used
    paired = all1[idx[0]]
    b = xs[0].shape[0]
    total = sum(
        loss(paired[r * b : (r + 1) * b], x0=x0s[r], generator=gens[r]) for r in range(WORLD)
    )
    (total / WORLD).backward()
    ref = W._grads(model)
    for res in ranks:
        diff = _maxdiff(res["eqm_global"]["grads"], ref)
        assert diff < GRAD_TOL, diff


def test_fsdp2_score_matching_trainer_resumes_without_state_for_a_gradient_free_parameter(ranks):
    # the output bias has no gradient under DSM, so Adam keeps no state for it; loading
    # the FSDP2 optimizer checkpoint raised "Missing optimizer state for parameter 'bias'"
    t0 = ranks[0]["fsdp_dsm_trainer"]
    assert t0["unbroken"] and set(t0["unbroken"]) == set(t0["resumed"])
    assert all(torch.equal(t0["unbroken"][k], t0["resumed"][k]) for k in t0["unbroken"])


def test_fsdp2_pcd_trainer_resume_is_bit_identical(ranks):
    t0 = ranks[0]["fsdp_pcd_trainer"]
    assert t0["unbroken"] and set(t0["unbroken"]) == set(t0["resumed"])
    assert all(torch.equal(t0["unbroken"][k], t0["resumed"][k]) for k in t0["unbroken"])
    for res in ranks:  # each rank got its own replay buffer back
        t = res["fsdp_pcd_trainer"]
        assert torch.equal(t["buffer_unbroken"], t["buffer_resumed"])
    assert not torch.equal(
        ranks[0]["fsdp_pcd_trainer"]["buffer_unbroken"],
        ranks[1]["fsdp_pcd_trainer"]["buffer_unbroken"],
    )
