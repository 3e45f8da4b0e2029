"""The one launcher of multi-process tests: `world` gloo ranks with a file:// rendezvous.

Workers are plain scripts (`python worker.py OUT_DIR`); they find `tests/_support` on
`PYTHONPATH`, which the launcher sets. Each rank writes `OUT_DIR/rank<r>.pt`. With
``torchrun=True`` the same launcher starts the ranks through ``torchrun --standalone``
(the documented launch path; the worker's `init_process_group` then uses env://).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

__all__ = ["WORLD", "finish", "init_process_group", "launch"]

WORLD = 2
TESTS = Path(__file__).resolve().parent.parent


def launch(
    worker: Path, out: Path, world: int = WORLD, timeout: float = 300.0, *, torchrun: bool = False
) -> list[dict]:
    """Start ``world`` gloo ranks of ``worker`` (file:// rendezvous) and load their results.

    A rank killed by a signal (a crash inside gloo's C++ threads, not a Python failure of
    the worker) or a run past ``timeout`` (a hang; CI saw one once in the torch-2.4 session
    while the same file passed in 17 s alone) is retried once in a fresh directory; any
    other failure, or a second hang, fails. ``timeout`` only catches a hang: a loaded CI
    machine needs minutes to import torch and build the process group on every rank.
    ``torchrun=True`` starts the ranks with ``torchrun --standalone --nproc-per-node=world``
    instead.
    """
    start = _start_torchrun if torchrun else _start_ranks
    for attempt in range(2):
        run_dir = out / f"attempt{attempt}"
        run_dir.mkdir()
        procs, logs = start(worker, run_dir, world), []
        deadline = time.monotonic() + timeout
        try:
            for p in procs:
                logs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
                q.communicate()  # reaped, its pipe closed
            if attempt == 0:
                continue
            raise
        codes = [p.returncode for p in procs]
        if torchrun:  # torchrun's failure report names each child's exit code
            codes = [int(c) for c in re.findall(r"exitcode\s*:\s*(-?\d+)", logs[0])] or codes
        if attempt == 0 and any(c < 0 for c in codes) and not any(c > 0 for c in codes):
            continue
        for r, c in enumerate(codes):
            assert c == 0, f"rank {r} failed:\n{logs[min(r, len(logs) - 1)][-5000:]}"
        return [torch.load(run_dir / f"rank{r}.pt", weights_only=False) for r in range(world)]
    raise AssertionError("unreachable")


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    env.pop("TORCHEBM_TEST_INIT", None)
    return env


def _start_torchrun(worker: Path, run_dir: Path, world: int) -> list[subprocess.Popen]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={world}", str(worker), str(run_dir)]
    return [
        subprocess.Popen(
            cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    ]


def _start_ranks(worker: Path, run_dir: Path, world: int) -> list[subprocess.Popen]:
    init = f"file://{run_dir / 'rendezvous'}"
    env = {**_env(), "TORCHEBM_TEST_INIT": init, "WORLD_SIZE": str(world)}
    return [
        subprocess.Popen(
            [sys.executable, str(worker), str(run_dir)],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(world)
    ]


def init_process_group() -> tuple[int, int]:
    """In a worker: join the launcher's group (or torchrun's env://); returns `(rank, world)`."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    init = os.environ.get("TORCHEBM_TEST_INIT")
    if init:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    else:
        dist.init_process_group("gloo")  # env:// as set by torchrun
    return dist.get_rank(), dist.get_world_size()


def finish(res: dict, out: Path, rank: int) -> None:
    """In a worker: save this rank's results, leave the group and exit without teardown.

    gloo's C++ threads can abort (std::terminate) while static objects are destroyed, after
    the results are safely written, so the process leaves with `os._exit(0)`.
    """
    import torch.distributed as dist

    torch.save(res, out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)
