"""`BaseTrainer` on 2 gloo ranks (DDP, plain + all-reduce, FSDP2) against a single-process oracle.

The worker ``_dist_trainer_worker.py`` runs every scenario in one launch; the oracle
(`_support.dist_toys.reference_train`) is written independently of `BaseTrainer`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from _support import dist_toys as W
from _support.launch import WORLD, launch

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ranks():
    with tempfile.TemporaryDirectory() as d:
        yield launch(HERE / "_dist_trainer_worker.py", Path(d))


def _maxdiff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.distributed
def test_trainer_refuses_ddp_model_whose_loss_holds_the_bare_module(ranks):
    for res in ranks:
        assert "unwrapped module" in res["wrong_wrapping"]


@pytest.fixture(scope="module")
def reference_params():
    return {n: W.reference_train(n, WORLD) for n in (W.N_MICRO, 2 * W.N_MICRO)}


@pytest.mark.distributed
@pytest.mark.parametrize("kind", ["ddp", "plain", "fsdp"])
def test_trainer_matches_single_process_and_resumes_identically(ranks, reference_params, kind):
    res0 = ranks[0][f"trainer_{kind}"]
    assert res0["step"] == W.N_MICRO // W.ACCUM
    assert res0["sync"] == (kind == "plain")
    # 2 optimizer steps (grad accumulation 2, Adam) on 2 ranks == single process on the
    # concatenated batches, up to float32 reduction order
    assert _maxdiff(res0["after"], reference_params[W.N_MICRO]) < 1e-6
    assert _maxdiff(res0["unbroken"], reference_params[2 * W.N_MICRO]) < 1e-6
    # resume from the checkpoint: bit-identical to the unbroken run, on every rank
    for res in ranks:
        t = res[f"trainer_{kind}"]
        assert t["resumed_step"] == 2 * W.N_MICRO // W.ACCUM
        assert torch.equal(t["replay_unbroken"], t["replay_resumed"])  # per-rank buffer
        if t["unbroken"]:  # FSDP full state lives on rank 0 only
            assert all(torch.equal(t["unbroken"][k], t["resumed"][k]) for k in t["unbroken"])
    # each rank had its own replay buffer (rank-decorrelated chains)
    r0, r1 = (ranks[r][f"trainer_{kind}"]["replay_unbroken"] for r in range(WORLD))
    assert not torch.equal(r0, r1)


@pytest.mark.distributed
@pytest.mark.parametrize("kind", ["ddp", "plain", "fsdp"])
@pytest.mark.parametrize("max_norm", [None, 0.5])
def test_a_loss_parameter_outside_the_model_is_averaged_and_clipped(ranks, kind, max_norm):
    # L = mean_b sum_j (W x_b + c)_j + 3 log_z mean(x) with rank r's batch (r + 1) X0:
    # dL/dW_j = mean_b x_b, dL/dc_j = 1, dL/dlog_z = 3 mean(x), averaged over ranks (the
    # mean of r + 1 is 1.5). Before the fix only the model's gradients were averaged (by
    # DDP, FSDP or the trainer): log_z took each rank's own gradient and start value.
    x0 = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    want = [1.5 * x0.mean(0).expand(2, 2), torch.ones(2), (3 * 1.5 * x0.mean()).reshape(1)]
    flat_want = torch.cat([w.reshape(-1) for w in want])
    if max_norm is not None:  # clip_grad_norm_ over the model's and log_z's gradients
        flat_want = flat_want * (max_norm / (flat_want.norm() + 1e-6))
    for res in ranks:
        r = res[f"outside_{kind}_{max_norm}"]
        assert r["start"].item() == 0.0  # rank 0's initial value, broadcast
        got = torch.cat([g.reshape(-1) for g in r["grads"]])
        assert torch.allclose(got, flat_want, rtol=1e-6, atol=1e-7), (got, flat_want)
        assert r["log_z"].item() == pytest.approx(-flat_want[-1].item(), rel=1e-6)
        # one flat all-reduce of the gradients the trainer averages (values + presence flags),
        # then the finiteness flag: DDP's and FSDP's gradients are not averaged a second time
        n_grads = 1 + 1 if kind != "plain" else 4 + 2 + 1 + 3
        assert r["sizes"] == [n_grads, 1]


@pytest.mark.distributed
def test_no_trainer_scenario_touched_the_global_rng(ranks):
    for res in ranks:
        assert all(res["global_rng_untouched"].values()), res["global_rng_untouched"]
