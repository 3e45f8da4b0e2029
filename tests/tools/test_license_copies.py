"""Each distribution ships the repository's LICENSE (MIT asks for the notice in every copy):
uv_build takes ``license-files`` from the package folder, so each holds a copy that must
not drift from the root one."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists())


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_each_package_ships_the_root_license(package):
    assert (package / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    assert 'license-files = ["LICENSE"]' in (package / "pyproject.toml").read_text()
