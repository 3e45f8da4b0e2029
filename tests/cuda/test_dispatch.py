"""Backend probing and path selection (no GPU needed)."""

import ast
import importlib.util
from pathlib import Path

import pytest
import torch

import torchebm.cuda as tc
from torchebm.core.errors import MissingDependencyError
from torchebm.cuda import _backend

HAS_TRITON = importlib.util.find_spec("triton") is not None


def test_public_api_and_version():
    assert sorted(tc.__all__) == sorted(
        [
            "is_available",
            "triton_available",
            "interpreter_enabled",
            "fused_langevin_step",
            "langevin_chain",
            "supports_energy",
            "fused_leapfrog_step",
            "graphed_loop",
        ]
    )
    for name in tc.__all__:
        assert callable(getattr(tc, name))
    assert isinstance(tc.__version__, str)


def test_samplers_can_probe_the_piece_with_find_spec():
    assert importlib.util.find_spec("torchebm.cuda") is not None


def test_is_available_is_triton_and_cuda():
    assert tc.triton_available() is HAS_TRITON
    assert tc.is_available() is (HAS_TRITON and torch.cuda.is_available())


def test_interpreter_flag_follows_the_environment(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert tc.interpreter_enabled()
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not tc.interpreter_enabled()


def test_only_the_kernels_module_imports_triton_at_module_level():
    # TRITON_INTERPRET is read when kernels are defined: importing torchebm.cuda must not
    # define them, so the kernels module is imported lazily, on the first kernel call
    pkg = Path(tc.__file__).parent
    for path in pkg.glob("*.py"):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
        names += [
            f"{n.module}.{a.name}" for n in top if isinstance(n, ast.ImportFrom) for a in n.names
        ]
        if path.name != "_kernels.py":
            assert not any(m.split(".")[0] == "triton" for m in names), path.name
            assert not any(m.endswith("_kernels") for m in names), path.name


def test_auto_and_eager_pick_eager_on_cpu():
    x = torch.zeros(2, 2)
    assert _backend.resolve_backend(None, x) == "eager"
    assert _backend.resolve_backend("auto", x) == "eager"
    assert _backend.resolve_backend("eager", x) == "eager"


@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
def test_force_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="force='triton' needs tensors on a CUDA device"):
        tc.fused_langevin_step(x, x, 0.1, force="triton")


def test_force_triton_without_triton_names_the_install_command(monkeypatch):
    monkeypatch.setattr(_backend, "_TRITON_OK", False)
    x = torch.zeros(2, 2)
    with pytest.raises(MissingDependencyError, match="pip install triton"):
        tc.fused_langevin_step(x, x, 0.1, force="triton")
    assert isinstance(MissingDependencyError("x", "y"), ImportError)
    assert tc.is_available() is False
    # auto silently uses the eager path
    assert tc.fused_langevin_step(x, x, 0.1, seed=0).shape == x.shape


def test_self_check_reports_the_backend(capsys, monkeypatch):
    from torchebm.cuda import _selfcheck

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if torch.cuda.is_available():
        pytest.skip("with a GPU the self-check runs the kernels (covered by the cuda tests)")
    assert _selfcheck.main() == 0
    out = capsys.readouterr().out
    assert "fused kernels available: False" in out and "eager fallback" in out
