"""``nox -s wheels``: inspect every built wheel, then install each alone into a clean venv.

Checks: a wheel holds only ``torchebm/<its portions>/`` and its dist-info (never
``torchebm/__init__.py``), each portion ships ``py.typed``, sibling requirements carry
the range of ``tools/check_pins.py`` (``>=FLOOR,<NEXT-BREAKING``), the license file
ships (``License-File`` and ``.dist-info/licenses/LICENSE``); each wheel installs alone
(with the wheels of its declared siblings, by file path, never by name: the registry holds
the earlier single-package ``torchebm`` 0.8.9) and imports; the meta installed from wheels
gives ``from torchebm.core import GaussianModel``. Last, README's upgrade from 0.8.9 with
pip (``pip uninstall -y torchebm``, then the wheels) must leave every file of the new
wheels in place; the plain ``pip install -U`` route that README warns against is run too
and its missing files are counted (reported, not failed: it is pip's install order).
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

from check_pins import range_problems
from packaging.requirements import Requirement
from packaging.version import Version
from workspace import PIECES, portions_of, sibling_deps, version_of


def find_wheels(dist: Path) -> dict[str, Path]:
    """piece -> its wheel at the workspace version in ``dist`` (exits when one is missing)."""
    wheels = {}
    for piece in PIECES:
        stem = piece.replace("-", "_")
        found = sorted(dist.glob(f"{stem}-{version_of(piece)}-*.whl"))
        if not found:
            sys.exit(f"no wheel for {piece} in {dist}")
        wheels[piece] = found[0]
    return wheels


def requires_problems(wheel_name: str, metadata: str) -> list[str]:
    """Sibling ``Requires-Dist`` lines of a wheel's METADATA that are not
    ``>=FLOOR,<NEXT-BREAKING`` (the rule of ``tools/check_pins.py``)."""
    problems = []
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist: torchebm"):
            req = Requirement(line.split(":", 1)[1].strip())
            current = Version(version_of(req.name))
            found = range_problems(req.specifier, current)
            problems += [f"{wheel_name}: '{req}' {p}" for p in found]
    return problems


def inspect_wheel(piece: str, whl: Path) -> list[str]:
    """Problems of one wheel's contents and sibling requirements."""
    problems = []
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
    problems += requires_problems(whl.name, meta)
    if "License-File: LICENSE" not in meta.splitlines() or not any(
        n.endswith(".dist-info/licenses/LICENSE") for n in names
    ):
        problems.append(f"{whl.name} does not ship its LICENSE (license-files in pyproject)")
    print(f"inspected {whl.name}: portions {sorted(portions)}")
    return problems


def closure(piece: str) -> list[str]:
    out, todo = [], [piece]
    while todo:
        p = todo.pop()
        if p not in out:
            out.append(p)
            todo += sibling_deps(p)
    return out


_IMPORT_PROBE = (
    "import importlib, sys\n"
    "for m in {portions!r}: importlib.import_module(m)\n"
    "for m in {others!r}:\n"
    "    try: importlib.import_module(m)\n"
    "    except ModuleNotFoundError: pass\n"
    "    else: sys.exit(m + ' importable without its distribution')\n"
    "from torchebm.core import GaussianModel, versions\n"
    "import torchebm\n"
    "assert not hasattr(torchebm, '__file__') or torchebm.__file__ is None, 'torchebm must be a namespace'\n"
    "print(sorted(versions()))\n"
)


def install_alone(piece: str, wheels: dict[str, Path]) -> None:
    """Install ``piece``'s wheel with its siblings' (by file path) into a clean venv and
    import its portions, none of the others (exits on failure)."""
    uv = shutil.which("uv") or "uv"
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
        code = _IMPORT_PROBE.format(portions=portions, others=others)
        out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit(f"{piece} from its wheel failed to import:\n{out.stdout}\n{out.stderr}")
        summary = re.sub(r"\s+", " ", out.stdout.strip())
        print(f"{piece:20s} installs alone from wheels: {summary}")


_MISSING_PROBE = (
    "from importlib import metadata\n"
    "gone = [str(f) for d in metadata.distributions()\n"
    "        if (d.metadata['Name'] or '').lower().startswith('torchebm')\n"
    "        for f in d.files or () if not f.locate().exists()]\n"
    "print(len(gone), ' '.join(gone[:5]))\n"
)


def missing_after_upgrade(wheels: dict[str, Path], *, uninstall_first: bool) -> list[str]:
    """Install torchebm 0.8.9 (from the registry, no dependencies) into a clean pip venv,
    upgrade it to ``wheels`` with pip (``pip uninstall -y torchebm`` first, as README says,
    or a plain ``pip install -U``) and return ``[count, first paths]`` of the files that the
    installed distributions list but that are gone."""
    uv = shutil.which("uv") or "uv"
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([uv, "venv", "-q", "--seed", "-p", sys.executable, str(venv)], check=True)
        py = str(venv / "bin" / "python")
        env = {**os.environ, "VIRTUAL_ENV": str(venv)}
        old = [uv, "pip", "install", "-q", "-p", py, "--no-deps", "torchebm==0.8.9"]
        if subprocess.run(old, env=env).returncode != 0:
            sys.exit(
                "torchebm 0.8.9 could not be installed from the registry (needed to check the upgrade)"
            )
        pip = [py, "-m", "pip", "-q", "--disable-pip-version-check"]
        if uninstall_first:
            subprocess.run([*pip, "uninstall", "-y", "torchebm"], check=True, env=env)
        files = [str(w) for w in wheels.values()]
        subprocess.run(
            [*pip, "install", "-U", "--no-deps", "--no-index", *files], check=True, env=env
        )
        out = subprocess.run([py, "-c", _MISSING_PROBE], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit(f"the upgrade probe failed:\n{out.stderr}")
        return out.stdout.split()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tools/check_wheels.py <dist-dir>", file=sys.stderr)
        return 2
    wheels = find_wheels(Path(argv[0]))
    problems = [p for piece, whl in wheels.items() for p in inspect_wheel(piece, whl)]
    if problems:
        print("wheels FAILED:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    for piece in PIECES:
        install_alone(piece, wheels)
    gone = missing_after_upgrade(wheels, uninstall_first=True)
    if gone[0] != "0":
        sys.exit(f"README's pip upgrade from 0.8.9 lost {gone[0]} files: {' '.join(gone[1:])}")
    print("pip upgrade from 0.8.9 as README says (uninstall first): every file in place")
    gone = missing_after_upgrade(wheels, uninstall_first=False)
    print(f"plain pip install -U over 0.8.9 (README warns against it): {gone[0]} files gone")
    print("wheels OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
