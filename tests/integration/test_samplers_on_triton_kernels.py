"""Run ``_interpreted_samplers.py`` in a child pytest with ``TRITON_INTERPRET=1``.

Triton chooses between compiling and interpreting when a kernel is defined, so the variable
must be set before ``triton`` is imported: a child process is the reliable way from a normal
test run (nox, ``.ci/run``). The child runs the samplers on the real Triton kernels.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
@pytest.mark.triton_interpret
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_samplers_on_the_triton_kernels_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(HERE / "_interpreted_samplers.py")],
        cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    summary = [line for line in proc.stdout.splitlines() if " passed" in line]
    assert summary and "skipped" not in summary[-1] and "4 passed" in summary[-1], tail
