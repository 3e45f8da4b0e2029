"""``nox -s wheels``: inspect every built wheel, then install each alone into a clean venv.

Checks: a wheel holds only ``torchebm/<its portions>/`` and its dist-info (never
``torchebm/__init__.py``), each portion ships ``py.typed``, sibling requirements carry
ranges; each wheel installs alone (with the wheels of its declared siblings, by file path,
never by name: the registry holds an unrelated ``torchebm`` 0.8.9) and imports; the meta
installed from wheels gives ``from torchebm.core import GaussianModel``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from workspace import PIECES, portions_of, sibling_deps, version_of

dist = Path(sys.argv[1])
wheels = {}
for piece in PIECES:
    stem = piece.replace("-", "_")
    found = sorted(dist.glob(f"{stem}-{version_of(piece)}-*.whl"))
    if not found:
        sys.exit(f"no wheel for {piece} in {dist}")
    wheels[piece] = found[0]

problems: list[str] = []
for piece, whl in wheels.items():
    own = set(portions_of(piece))
    with zipfile.ZipFile(whl) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    if "torchebm/__init__.py" in names:
        problems.append(f"{whl.name} ships torchebm/__init__.py")
    portions = {n.split("/")[1] for n in names if n.startswith("torchebm/") and n.count("/") >= 2}
    if portions != own:
        problems.append(f"{whl.name} holds portions {sorted(portions)}, expected {sorted(own)}")
    for p in own:
        if f"torchebm/{p}/py.typed" not in names:
            problems.append(f"{whl.name} lacks torchebm/{p}/py.typed")
    for line in meta.splitlines():
        if line.startswith("Requires-Dist: torchebm"):
            req = Requirement(line.split(":", 1)[1].strip())
            if not str(req.specifier) or not any(s.operator.startswith("<") for s in req.specifier):
                problems.append(f"{whl.name}: sibling requirement without a range: {req}")
    print(f"inspected {whl.name}: portions {sorted(portions)}")
if problems:
    sys.exit("wheels FAILED:\n" + "\n".join(problems))


def closure(piece: str) -> list[str]:
    out, todo = [], [piece]
    while todo:
        p = todo.pop()
        if p not in out:
            out.append(p)
            todo += sibling_deps(p)
    return out


uv = shutil.which("uv") or "uv"
for piece in PIECES:
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        py = venv / "bin" / "python"
        files = [str(wheels[p]) for p in closure(piece)]
        env = {**os.environ, "VIRTUAL_ENV": str(venv)}
        subprocess.run([uv, "pip", "install", "-q", "-p", str(py), *files], check=True, env=env)
        portions = [f"torchebm.{p}" for q in closure(piece) for p in portions_of(q)]
        others = [
            f"torchebm.{p}" for q in PIECES if q not in closure(piece) for p in portions_of(q)
        ]
        code = (
            "import importlib, sys\n"
            f"for m in {portions!r}: importlib.import_module(m)\n"
            f"for m in {others!r}:\n"
            "    try: importlib.import_module(m)\n"
            "    except ModuleNotFoundError: pass\n"
            "    else: sys.exit(m + ' importable without its distribution')\n"
            "from torchebm.core import GaussianModel, versions\n"
            "import torchebm\n"
            "assert not hasattr(torchebm, '__file__') or torchebm.__file__ is None, 'torchebm must be a namespace'\n"
            "print(sorted(versions()))\n"
        )
        out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit(f"{piece} from its wheel failed to import:\n{out.stdout}\n{out.stderr}")
        summary = re.sub(r"\s+", " ", out.stdout.strip())
        print(f"{piece:20s} installs alone from wheels: {summary}")
print("wheels OK")
