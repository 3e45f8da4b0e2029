"""Importing TorchEBM does not import torch's compiler stack.

``torch._dynamo`` takes about three seconds to import; a module-level
``@torch.compiler.disable`` imports it, and one in the score-matching base made
``import torchebm.losses`` (and everything above it) that much slower. The library applies
``torch.compiler.disable`` only where a caller is being compiled (`eager_under_compile`).
"""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_packages_leaves_dynamo_unimported():
    code = (
        "import importlib, importlib.util, pkgutil, sys, torch\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch alone imports dynamo'\n"
        "paths = importlib.util.find_spec('torchebm').submodule_search_locations\n"
        "names = sorted(m.name for m in pkgutil.iter_modules(paths) if m.name[0] != '_')\n"
        "assert len(names) >= 14, names\n"
        "for name in names:\n"
        "    importlib.import_module('torchebm.' + name)\n"
        "    if 'torch._dynamo' in sys.modules:\n"
        "        sys.exit('import torchebm.' + name + ' imported torch._dynamo')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
