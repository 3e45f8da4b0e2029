"""`kernel_two_sample_test` holds one pooled kernel matrix, as documented.

Before the fix its row sums ``kz.sum(1, dtype=float64)`` converted the whole float32
matrix to float64 first (a temporary twice its size: peak 3x the matrix), and with several
bandwidths each term ``exp(d2 * c)`` was a full-size temporary (4x for three). The peak
resident memory is read from the kernel (``VmHWM``, reset through ``/proc/self/clear_refs``)
with the row blocks made small, so that the matrix dominates, in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

N = 1500  # per sample: the pooled matrix is 3000^2 float32 = 36 MB


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _status_bytes("VmHWM")
    except (OSError, KeyError):
        return False
    return True


pytestmark = pytest.mark.skipif(
    not (os.path.exists("/proc/self/clear_refs") and _can_reset_peak()),
    reason="needs Linux's resettable peak RSS (/proc/self/clear_refs)",
)


def _peak_over_current(fn) -> int:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    base = _status_bytes("VmRSS")
    fn()
    return _status_bytes("VmHWM") - base


def _mmd2_unbiased_float64(x: torch.Tensor, y: torch.Tensor, hs: list[float]) -> float:
    """Hand-written reference: the U-statistic of Gretton et al. (2012), eq. 3."""
    x, y = x.double(), y.double()

    def k(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in hs) / len(hs)

    n, m = x.shape[0], y.shape[0]
    kxx, kyy = k(x, x), k(y, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * k(x, y).mean())


#: the measurement, run in a fresh interpreter: the allocator's state left by the tests a
#: pytest worker ran before would count in the peak
_CHILD = """
import json, sys
import torch
import torchebm.metrics._metrics as metrics_impl
from torchebm.metrics import kernel_two_sample_test
sys.path.insert(0, {here!r})
from test_metrics_memory import N, _peak_over_current
metrics_impl._BLOCK = 1 << 16  # blocks of 0.5 MB in float64
bandwidth = {bandwidth!r}
g = torch.Generator().manual_seed(0)
x = torch.randn(N, 3, generator=g)
y = torch.randn(N, 3, generator=g) + 0.3
kernel_two_sample_test(x[:8], y[:8], n_permutations=2, bandwidth=bandwidth)  # warm up
out = []
peak = _peak_over_current(lambda: out.append(kernel_two_sample_test(
    x, y, n_permutations=10, bandwidth=bandwidth, generator=torch.Generator().manual_seed(1))))
print(json.dumps({{"ratio": peak / ((2 * N) ** 2 * x.element_size()),
                   "statistic": float(out[0].statistic)}}))
"""


@pytest.mark.parametrize("bandwidth", [1.0, [0.5, 1.0, 2.0]], ids=["one", "three"])
def test_peak_memory_is_one_kernel_matrix(bandwidth):
    here = os.path.dirname(os.path.abspath(__file__))
    code = _CHILD.format(here=here, bandwidth=bandwidth)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    # one matrix plus blocks and vectors (before the fix: 3.0x and 4.0x)
    assert got["ratio"] < 1.25, got["ratio"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 3, generator=g)
    y = torch.randn(N, 3, generator=g) + 0.3
    hs = [bandwidth] if isinstance(bandwidth, float) else bandwidth
    ref = _mmd2_unbiased_float64(x, y, hs)
    # float32 kernel values (relative rounding 6e-8) summed in float64
    assert abs(got["statistic"] - ref) < 1e-5 * max(1.0, abs(ref))
