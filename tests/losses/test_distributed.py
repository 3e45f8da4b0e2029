"""Replay-buffer mixing across ranks: a 2-process gloo group on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent


@pytest.mark.distributed
@pytest.mark.slow
def test_mix_buffer_across_ranks_is_a_shared_permutation():
    world = 2
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for attempt in range(2):  # a rank killed by a signal (a gloo thread crash): retry once
            run_dir = Path(d) / f"attempt{attempt}"
            run_dir.mkdir()
            init = run_dir / "init"
            outs = [run_dir / f"rank{r}.pt" for r in range(world)]
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        str(HERE / "_dist_mix_worker.py"),
                        str(r),
                        str(world),
                        str(init),
                        str(outs[r]),
                    ],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for r in range(world)
            ]
            logs = [p.communicate(timeout=120)[0] for p in procs]
            codes = [p.returncode for p in procs]
            if attempt == 0 and any(c < 0 for c in codes) and not any(c > 0 for c in codes):
                continue
            break
        for r, c in enumerate(codes):
            assert c == 0, logs[r][-3000:]
        res = [torch.load(o, weights_only=True) for o in outs]
    pooled = torch.cat([r["buffer"][:, 0] for r in res])
    ages = torch.cat([r["age"] for r in res])
    # together the ranks hold exactly the pooled chains, each once: a permutation
    assert sorted(pooled.tolist()) == [float(v) for v in list(range(6)) + list(range(10, 16))]
    # ages travel with their chains (value 10 r + i has age 100 r + i)
    assert torch.equal(ages, (pooled // 10 * 100 + pooled % 10).long())
    # chains really moved between ranks, and the pointer is untouched
    assert (res[0]["buffer"][:, 0] >= 10).any() and (res[1]["buffer"][:, 0] < 10).any()
    assert res[0]["ptr"] == res[1]["ptr"] == 4
