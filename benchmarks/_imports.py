"""Import cost: ``import torchebm.samplers`` in a fresh interpreter beside ``import torch``."""

from __future__ import annotations

import subprocess
import sys
import time

from _harness import Case, Config, Workload

__all__ = ["WORKLOADS"]

# the child prints its peak RSS (kB) so that memory is measured per import, not per process tree
_PROBE = (
    "{stmt}\n"
    "for line in open('/proc/self/status'):\n"
    "    if line.startswith('VmHWM:'):\n"
    "        print(line.split()[1])\n"
)


def _import_case(cfg: Config, module: str) -> Case:
    stmts = {"library": f"import {module}", "floor": "import torch"}
    peaks: dict[str, int | None] = {}

    def run(which: str) -> float:
        code = _PROBE.format(stmt=stmts[which])
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
        )
        elapsed = time.perf_counter() - t0
        try:
            peaks[which] = int(out.stdout.split()[-1]) * 1024
        except (IndexError, ValueError):
            peaks[which] = None
        return elapsed

    def never():  # in-process calls are meaningless here (the module is already imported)
        raise RuntimeError("import workloads are timed through subprocesses")

    return Case(
        never,
        never,
        timer=run,
        memory=lambda which: peaks.get(which),
        notes="fresh interpreter; peak = child VmHWM",
    )


WORKLOADS = [
    Workload(
        "import_samplers",
        "import",
        "python -c 'import torchebm.samplers' beside 'import torch'",
        lambda c: _import_case(c, "torchebm.samplers"),
    ),
]
