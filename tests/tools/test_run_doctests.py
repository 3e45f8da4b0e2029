"""tools/run_doctests.py: docstring examples run, failures and broken imports are counted."""

import os
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import run_doctests  # noqa: E402


def _module(name: str, doc: str) -> str:
    mod = types.ModuleType(name)

    def example():
        pass

    example.__doc__ = doc
    example.__module__ = name
    mod.example = example
    sys.modules[name] = mod
    return name


def test_a_passing_and_a_failing_example_are_counted(capsys):
    good = _module("_doctest_probe_good", ">>> 1 + 1\n2\n")
    bad = _module("_doctest_probe_bad", ">>> 1 + 1\n3\n")
    try:
        attempted, failed, broken = run_doctests.run_modules([good, bad])
    finally:
        del sys.modules[good], sys.modules[bad]
    assert (attempted, failed, broken) == (2, 1, [])
    assert "Expected:\n    3\nGot:\n    2" in capsys.readouterr().out


def test_a_module_that_does_not_import_is_reported():
    attempted, failed, broken = run_doctests.run_modules(["_no_such_module_here"])
    assert attempted == 0 and failed == 0
    assert broken and broken[0].startswith("_no_such_module_here: import failed")


def test_examples_run_in_a_temporary_folder():
    cwd = os.getcwd()
    name = _module("_doctest_probe_cwd", f">>> import os; os.getcwd() != {cwd!r}\nTrue\n")
    try:
        assert run_doctests.run_modules([name])[:2] == (1, 0)
    finally:
        del sys.modules[name]
    assert os.getcwd() == cwd


def test_modules_of_skips_main_modules(tmp_path, monkeypatch):
    pkg = tmp_path / "torchebm" / "probe"
    pkg.mkdir(parents=True)
    for rel in ("__init__.py", "_inner.py", "__main__.py"):
        (pkg / rel).write_text("raise SystemExit(3)\n" if rel == "__main__.py" else "")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(run_doctests, "portions_of", lambda piece: ["probe"])
    for name in [m for m in sys.modules if m == "torchebm" or m.startswith("torchebm.probe")]:
        monkeypatch.delitem(sys.modules, name)
    names = list(run_doctests.modules_of(["any"]))
    assert names == ["torchebm.probe", "torchebm.probe._inner"]
