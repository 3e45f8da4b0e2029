"""Importing TorchEBM does not import torch's compiler stack.

``torch._dynamo`` takes about three seconds to import; a module-level
``@torch.compiler.disable`` imports it, and one in the score-matching base made
``import torchebm.losses`` (and everything above it) that much slower. The library applies
``torch.compiler.disable`` only where a caller is being compiled (`eager_under_compile`).
"""

from __future__ import annotations

import subprocess
import sys

PACKAGES = [
    "core",
    "samplers",
    "losses",
    "flows",
    "integrators",
    "interpolants",
    "couplings",
    "models",
    "datasets",
    "cuda",
    "metrics",
    "utils",
    "visualization",
    "cli",
]


def test_importing_the_packages_leaves_dynamo_unimported():
    code = (
        "import importlib, sys, torch\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch alone imports dynamo'\n"
        f"for name in {PACKAGES!r}:\n"
        "    importlib.import_module('torchebm.' + name)\n"
        "    if 'torch._dynamo' in sys.modules:\n"
        "        sys.exit('import torchebm.' + name + ' imported torch._dynamo')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
