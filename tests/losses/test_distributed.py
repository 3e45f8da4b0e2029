"""Replay-buffer mixing across ranks: a 2-process gloo group on CPU (and on one GPU)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from _support.launch import launch

HERE = Path(__file__).parent


def _mix(device: str, monkeypatch) -> list[dict]:
    monkeypatch.setenv("TORCHEBM_TEST_MIX_DEVICE", device)
    with tempfile.TemporaryDirectory() as d:
        return launch(HERE / "_dist_mix_worker.py", Path(d))


def _check_shared_permutation(res: list[dict], perm: torch.Tensor) -> None:
    pooled = torch.cat([r["buffer"][:, 0] for r in res])
    ages = torch.cat([r["age"] for r in res])
    # together the ranks hold exactly the pooled chains, each once: a permutation
    assert sorted(pooled.tolist()) == [float(v) for v in list(range(6)) + list(range(10, 16))]
    # ages travel with their chains (value 10 r + i has age 100 r + i)
    assert torch.equal(ages, (pooled // 10 * 100 + pooled % 10).long())
    # chains really moved between ranks, and the pointer is untouched
    assert (res[0]["buffer"][:, 0] >= 10).any() and (res[1]["buffer"][:, 0] < 10).any()
    assert res[0]["ptr"] == res[1]["ptr"] == 4
    # the permutation is rank 0's generator's (seed 1234), drawn on the generator's device
    start = torch.cat([torch.arange(6.0), 10 + torch.arange(6.0)])
    assert torch.equal(pooled, start[perm.cpu()])


@pytest.mark.distributed
@pytest.mark.slow
def test_mix_buffer_across_ranks_is_a_shared_permutation(monkeypatch):
    res = _mix("cpu", monkeypatch)
    _check_shared_permutation(
        res, torch.randperm(12, generator=torch.Generator().manual_seed(1234))
    )


@pytest.mark.cuda
@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mix_buffer_across_ranks_draws_on_a_cuda_generators_device(monkeypatch):
    # CUDA buffers and a CUDA generator: the permutation was drawn with device="cpu",
    # which a CUDA generator refuses (RuntimeError on rank 0)
    res = _mix("cuda", monkeypatch)
    assert [r["device"] for r in res] == ["cuda", "cuda"]
    g = torch.Generator("cuda").manual_seed(1234)
    _check_shared_permutation(res, torch.randperm(12, generator=g, device="cuda"))
