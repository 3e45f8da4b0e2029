"""Namespace and packaging rules of DESIGN.md sections 1-2, checked on the source tree."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from workspace import PIECES, portions_of, pyproject, sibling_deps  # noqa: E402

OWNER = {"interpolants": "flows", "integrators": "flows", "couplings": "flows", "flows": "flows"}


def test_one_folder_per_distribution():
    folders = sorted(p.name for p in (ROOT / "packages").iterdir() if p.is_dir())
    assert folders == sorted(PIECES)
    for piece in PIECES:
        proj = pyproject(piece)["project"]
        assert proj["name"] == piece
        assert (ROOT / "packages" / piece / "README.md").exists()
        assert (ROOT / "packages" / piece / "CHANGELOG.md").exists()


def test_no_distribution_ships_the_namespace_init():
    assert not list((ROOT / "packages").glob("*/src/torchebm/__init__.py"))


@pytest.mark.parametrize("piece", PIECES)
def test_portions_import_and_declare_all(piece):
    for portion in portions_of(piece):
        assert (ROOT / "packages" / piece / "src" / "torchebm" / portion / "py.typed").exists()
        mod = importlib.import_module(f"torchebm.{portion}")
        assert isinstance(mod.__all__, list)
        for name in mod.__all__:
            assert hasattr(mod, name), f"torchebm.{portion}.__all__ lists missing {name}"
        assert mod.__version__ == pyproject(piece)["project"]["version"]


def test_torchebm_is_a_namespace_package():
    import torchebm

    assert getattr(torchebm, "__file__", None) is None
    assert len(list(torchebm.__path__)) >= 2
    assert not hasattr(torchebm, "__version__")


IMPORT = re.compile(r"^\s*(?:from|import)\s+torchebm\.([a-z_]+)", re.M)
DYNAMIC = re.compile(r"import_module\(\s*['\"]torchebm\.([a-z_]+)")


@pytest.mark.parametrize("piece", PIECES)
def test_no_undeclared_sibling_imports(piece):
    own = set(portions_of(piece))
    allowed = own | {p for dep in sibling_deps(piece) for p in portions_of(dep)}
    offenders = []
    for path in (ROOT / "packages" / piece / "src").rglob("*.py"):
        text = path.read_text()
        for match in IMPORT.finditer(text):
            if match.group(1) not in allowed:
                offenders.append(f"{path.relative_to(ROOT)} imports torchebm.{match.group(1)}")
        for match in DYNAMIC.finditer(text):
            # optional accelerators are probed with find_spec and imported dynamically
            if match.group(1) not in allowed and match.group(1) != "cuda":
                offenders.append(f"{path.relative_to(ROOT)} loads torchebm.{match.group(1)}")
    assert not offenders, offenders
