"""Run the Triton-interpreter tests in a child pytest with ``TRITON_INTERPRET=1``.

Triton decides between compiling and interpreting when a kernel is defined, so the variable
must be in the environment before ``triton`` is imported: a separate process is the only
reliable way to get it from a normal test run (nox, ``.ci/run``).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.mark.triton_interpret
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
@pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") == "1",
    reason="already interpreting: test_triton_interpret.py runs in this process",
)
def test_kernels_under_the_triton_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(HERE / "test_triton_interpret.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    summary = [line for line in proc.stdout.splitlines() if " passed" in line]
    assert summary and "skipped" not in summary[-1], tail
