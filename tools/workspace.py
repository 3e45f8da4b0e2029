"""Facts about the workspace members, read from their pyproject files (used by noxfile and tools)."""

from __future__ import annotations

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"

PIECES = [
    "torchebm-core",
    "torchebm-flows",
    "torchebm-samplers",
    "torchebm-losses",
    "torchebm-models",
    "torchebm-datasets",
    "torchebm-cuda",
    "torchebm",
]


def pyproject(piece: str) -> dict:
    return tomllib.loads((PACKAGES / piece / "pyproject.toml").read_text())


def version_of(piece: str) -> str:
    return pyproject(piece)["project"]["version"]


def portions_of(piece: str) -> list[str]:
    """Portions (``torchebm.<x>`` subpackages) a distribution owns, from its src tree."""
    src = PACKAGES / piece / "src" / "torchebm"
    return sorted(p.name for p in src.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def sibling_requirements(piece: str, *, include_optional: bool = False) -> list[str]:
    proj = pyproject(piece)["project"]
    reqs = list(proj.get("dependencies", []))
    if include_optional:
        for extra in proj.get("optional-dependencies", {}).values():
            reqs += extra
    return [r for r in reqs if re.match(r"^torchebm(-[a-z]+)?\b", r)]


def sibling_deps(piece: str) -> list[str]:
    """Distribution names of the declared (non-optional) sibling dependencies."""
    return [re.match(r"^(torchebm(-[a-z]+)?)", r).group(1) for r in sibling_requirements(piece)]


def test_dirs_of(piece: str) -> list[str]:
    """Test folders of a piece: ``tests/<portion>`` for each portion it owns."""
    return [f"tests/{p}" for p in portions_of(piece)]
