"""An installed triton that fails to import is reported as such (it was "not installed", and
``force="triton"`` said to ``pip install triton``, which was already done)."""

from __future__ import annotations

import sys

import pytest
import torch

from torchebm.core.errors import MissingDependencyError
from torchebm.cuda import _backend, _selfcheck


@pytest.fixture
def broken_triton(tmp_path, monkeypatch):
    package = tmp_path / "triton"
    package.mkdir()
    (package / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'setuptools'\")\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    monkeypatch.setattr(_backend, "_TRITON_OK", None)
    monkeypatch.setattr(_backend, "_TRITON_IMPORT_ERROR", None)
    yield


def test_force_triton_names_the_import_error(broken_triton):
    assert not _backend.triton_available()
    with pytest.raises(
        MissingDependencyError, match="installed but `import triton` failed"
    ) as info:
        _backend.resolve_backend("triton", torch.zeros(2))
    assert "setuptools" in str(info.value) and "pip install triton" not in str(info.value)


def test_selfcheck_says_installed_but_broken(broken_triton, capsys):
    assert _selfcheck.main([]) == 0
    out = capsys.readouterr().out
    assert "triton: installed but failed to import (ModuleNotFoundError" in out
    assert "not installed" not in out
