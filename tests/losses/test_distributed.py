"""Replay-buffer mixing across ranks: a 2-process gloo group on CPU."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from _support.launch import launch

HERE = Path(__file__).parent


@pytest.mark.distributed
@pytest.mark.slow
def test_mix_buffer_across_ranks_is_a_shared_permutation():
    with tempfile.TemporaryDirectory() as d:
        res = launch(HERE / "_dist_mix_worker.py", Path(d))
    pooled = torch.cat([r["buffer"][:, 0] for r in res])
    ages = torch.cat([r["age"] for r in res])
    # together the ranks hold exactly the pooled chains, each once: a permutation
    assert sorted(pooled.tolist()) == [float(v) for v in list(range(6)) + list(range(10, 16))]
    # ages travel with their chains (value 10 r + i has age 100 r + i)
    assert torch.equal(ages, (pooled // 10 * 100 + pooled % 10).long())
    # chains really moved between ranks, and the pointer is untouched
    assert (res[0]["buffer"][:, 0] >= 10).any() and (res[1]["buffer"][:, 0] < 10).any()
    assert res[0]["ptr"] == res[1]["ptr"] == 4
