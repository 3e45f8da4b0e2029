"""Run inside a piece's own venv: its portions import, and no undeclared sibling is installed.

Proves ``tests(piece)`` really tests the piece alone (e.g. with only ``torchebm-core``
installed, ``import torchebm.samplers`` raises ``ModuleNotFoundError``).
"""

from __future__ import annotations

import importlib
import sys

from workspace import PIECES, portions_of, sibling_deps

piece = sys.argv[1]
allowed, todo = set(), [piece]
while todo:
    p = todo.pop()
    if p not in allowed:
        allowed.add(p)
        todo += sibling_deps(p)

for p in PIECES:
    for portion in portions_of(p):
        name = f"torchebm.{portion}"
        if p in allowed:
            mod = importlib.import_module(name)
            assert hasattr(mod, "__all__"), f"{name} has no __all__"
            print(f"ok      {name:28s} {mod.__version__}")
        else:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError:
                print(f"absent  {name:28s} (not a dependency of {piece})")
            else:
                sys.exit(
                    f"{name} is importable in the venv of {piece}, which does not depend on {p}"
                )
