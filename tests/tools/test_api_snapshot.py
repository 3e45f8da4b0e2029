"""tools/api_snapshot.py: the public-API comparison on small synthetic APIs, and griffe reading."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import api_snapshot as api  # noqa: E402

F = "pkg.f"


def fn(*params):
    return {"kind": "function", "params": [list(p) for p in params]}


def diff(old, new):
    return api.compare(old, new)


def test_identical_apis_have_nothing_to_report():
    a = {"pkg": {"kind": "module"}, F: fn(("x", "pos", True))}
    assert diff(a, a) == ([], [])


def test_removed_name_is_breaking_and_reported_once_for_a_removed_class():
    old = {
        "pkg.A": {"kind": "class", "params": []},
        "pkg.A.run": fn(),
        "pkg.A.size": {"kind": "attribute"},
        F: fn(),
    }
    breaks, adds = diff(old, {F: fn()})
    assert breaks == ["pkg.A: removed"] and adds == []


def test_removed_method_of_a_kept_class_is_breaking():
    old = {"pkg.A": {"kind": "class", "params": []}, "pkg.A.run": fn()}
    breaks, _ = diff(old, {"pkg.A": {"kind": "class", "params": []}})
    assert breaks == ["pkg.A.run: removed"]


def test_kind_change_is_breaking():
    breaks, _ = diff({F: fn()}, {F: {"kind": "attribute"}})
    assert breaks == ["pkg.f: function became attribute"]


@pytest.mark.parametrize(
    "new, expected",
    [
        ([("y", "pos", False)], "parameter 'x' removed or renamed"),
        ([("x", "pos", False), ("y", "pos", True)], "new required parameter 'y'"),
        ([("x", "kwonly", False)], "parameter 'x' changed from pos to kwonly"),
        ([("x", "pos", True)], "parameter 'x' made required (its default was removed)"),
    ],
)
def test_parameter_breaks(new, expected):
    breaks, _ = diff({F: fn(("x", "pos", False))}, {F: fn(*new)})
    assert breaks == [f"pkg.f: {expected}"]


def test_reordered_positional_parameters_are_breaking():
    old = fn(("a", "pos", True), ("b", "pos", True))
    new = fn(("b", "pos", True), ("a", "pos", True))
    breaks, _ = diff({F: old}, {F: new})
    assert "pkg.f: parameter 'a' moved from position 0 to 1" in breaks
    assert len(breaks) == 2


def test_removed_kwargs_is_breaking():
    breaks, _ = diff({F: fn(("kw", "**kwargs", False))}, {F: fn()})
    assert breaks == ["pkg.f: **kwargs parameter 'kw' removed"]


def test_additions_are_not_breaking():
    old = {F: fn(("x", "pos", True))}
    new = {
        F: fn(("x", "pos", True), ("y", "pos", False), ("z", "kwonly", False)),
        "pkg.g": fn(("a", "pos", True)),
        "pkg.K": {"kind": "attribute"},
    }
    breaks, adds = diff(old, new)
    assert breaks == []
    assert adds == [
        "pkg.f: new optional parameter 'y'",
        "pkg.f: new optional parameter 'z'",
        "pkg.g: new function",
        "pkg.K: new attribute",
    ]
    # a keyword-only parameter moved among keyword-only ones, or made optional: fine
    old = {F: fn(("a", "kwonly", True), ("b", "kwonly", False))}
    new = {F: fn(("b", "kwonly", False), ("a", "kwonly", False))}
    assert diff(old, new) == ([], [])


@pytest.mark.parametrize(
    "old, new, ok",
    [
        ("0.1.0", "0.2.0", True),
        ("0.1.3", "0.2.0rc1", True),
        ("0.1.0", "0.1.1", False),
        ("0.1.0", "0.1.0", False),
        ("0.9.0", "1.0.0", True),
        ("1.2.0", "1.3.0", False),
        ("1.2.0", "2.0.0", True),
        # pre-, post- and dev-release digits are not release numbers ("0.1post1" is 0.1)
        ("0.1.0", "0.1post1", False),
        ("0.1.0", "0.1.0.post2", False),
        ("0.1.0", "0.1rc2", False),
        ("0.1.0", "0.1.1.dev3", False),
        ("0.1.0", "0.2.0.dev1", True),
        ("0.1.0", "0.2rc1", True),
        ("1.0.0", "1.0.0.post10", False),
        ("1.9.0", "2.0.0b1", True),
    ],
)
def test_breaking_bump_follows_the_release_rules(old, new, ok):
    assert api.breaking_bump(old, new) is ok


def test_check_piece_fails_without_the_bump_and_names_the_break():
    snap = {"version": "0.1.0", "api": {F: fn(("x", "pos", False))}}
    now = {F: fn()}
    ok, lines = api.check_piece("torchebm-x", snap, now, "0.1.1")
    assert not ok
    assert "needs a new minor (0.x)" in lines[0]
    assert lines[1] == "  BREAKING pkg.f: parameter 'x' removed or renamed"
    ok, lines = api.check_piece("torchebm-x", snap, now, "0.2.0")
    assert ok and "allowed by the version bump 0.1.0 -> 0.2.0" in lines[0]


def test_check_piece_passes_additions_and_says_how_to_refresh():
    snap = {"version": "0.1.0", "api": {F: fn()}}
    ok, lines = api.check_piece("torchebm-x", snap, {F: fn(), "pkg.g": fn()}, "0.1.0")
    assert ok and api.REFRESH in lines[0] and lines[1] == "  added pkg.g: new function"


def test_griffe_reading_of_a_small_package():
    griffe = pytest.importorskip("griffe")
    code = """
__all__ = ["Sampler", "run", "LIMIT"]
LIMIT = 3

class Base:
    def reset(self, hard=False): ...

class Sampler(Base):
    def __init__(self, model, step=0.1, *, seed=None): ...
    def sample(self, x, /, n, *args, **kwargs): ...
    @property
    def size(self): ...
    @staticmethod
    def make(cfg): ...
    def _private(self): ...

def run(a, b=1): ...
def hidden(): ...
"""
    with griffe.temporary_visited_package("torchebm_demo", {"__init__.py": code}) as pkg:
        out = {}
        api._walk_module("torchebm_demo", pkg, out)
    assert out == {
        "torchebm_demo": {"kind": "module"},
        "torchebm_demo.LIMIT": {"kind": "attribute"},
        "torchebm_demo.Sampler": {
            "kind": "class",
            "params": [
                ["model", "pos", True],
                ["step", "pos", False, "0.1"],
                ["seed", "kwonly", False, "None"],
            ],
        },
        "torchebm_demo.Sampler.sample": {
            "kind": "function",
            "params": [
                ["x", "posonly", True],
                ["n", "pos", True],
                ["args", "*args", False],
                ["kwargs", "**kwargs", False],
            ],
        },
        "torchebm_demo.Sampler.size": {"kind": "attribute"},
        "torchebm_demo.Sampler.make": {"kind": "function", "params": [["cfg", "pos", True]]},
        "torchebm_demo.Sampler.reset": {
            "kind": "function",
            "params": [["hard", "pos", False, "False"]],
        },
        "torchebm_demo.run": {
            "kind": "function",
            "params": [["a", "pos", True], ["b", "pos", False, "1"]],
        },
    }


@pytest.mark.parametrize(
    "old_default, new_default, broken",
    [("1e-3", "0.001", False), ("0.01", "0.01", False), ("0.01", "0.02", True)],
)
def test_a_default_that_names_another_value_is_breaking(old_default, new_default, broken):
    old = fn(("step", "pos", False, old_default))
    breaks, _ = diff({F: old}, {F: fn(("step", "pos", False, new_default))})
    expected = [f"pkg.f: parameter 'step' default changed from {old_default} to {new_default}"]
    assert breaks == (expected if broken else [])


def test_snapshots_without_defaults_still_compare():
    old = fn(("step", "pos", False))  # written before defaults were recorded
    assert diff({F: old}, {F: fn(("step", "pos", False, "0.01"))}) == ([], [])
    breaks, _ = diff({F: old}, {F: fn(("step", "pos", True))})
    assert breaks == ["pkg.f: parameter 'step' made required (its default was removed)"]


@pytest.mark.parametrize(
    "version, release",
    [("0.1post1", (0, 1, 0)), ("0.1rc2", (0, 1, 0)), ("0.12.3.dev4", (0, 12, 3)), ("2", (2, 0, 0))],
)
def test_release_numbers_stop_at_the_first_suffix(version, release):
    assert api._release(version) == release


def test_release_numbers_without_packaging(monkeypatch):
    monkeypatch.setitem(sys.modules, "packaging.version", None)  # the import fails
    assert api._release("0.1post1") == (0, 1, 0)
    assert api._release("0.1rc2") == (0, 1, 0)
    assert api._release("1.2.3") == (1, 2, 3)
    assert not api.breaking_bump("0.1.0", "0.1post1")


@pytest.fixture
def piece(tmp_path, monkeypatch):
    """A piece whose snapshot (version 0.1.0, ``f(x=...)``) lies in ``tmp_path``; set
    ``state["api"]`` and ``state["version"]`` to change what its source tree says."""
    monkeypatch.setattr(api, "API_DIR", tmp_path)
    name = api.PIECES[0]
    snap = {"piece": name, "version": "0.1.0", "api": {F: fn(("x", "pos", False))}}
    api.snapshot_path(name).write_text(api.dump(snap))
    state = {"api": snap["api"], "version": "0.1.0"}
    monkeypatch.setattr(api, "current_api", lambda p: state["api"])
    monkeypatch.setattr(api, "version_of", lambda p: state["version"])
    return name, state


def _written(name):
    import json

    return json.loads(api.snapshot_path(name).read_text())


def test_write_refuses_an_unreleased_break_and_names_it(piece, capsys):
    name, state = piece
    state["api"] = {F: fn(("y", "pos", False))}  # x renamed to y
    before = api.snapshot_path(name).read_text()
    assert api.main(["--write", name]) == 1
    out = capsys.readouterr().out
    assert "BREAKING pkg.f: parameter 'x' removed or renamed" in out
    assert "--accept-breaking" in out
    assert api.snapshot_path(name).read_text() == before  # nothing written
    assert api.main(["--check", name]) == 1  # the gate still fails


def test_write_records_a_break_after_the_bump_or_when_accepted(piece):
    name, state = piece
    state["api"] = {F: fn(("y", "pos", False))}
    assert api.main(["--write", "--accept-breaking", name]) == 0
    assert _written(name)["api"] == state["api"]
    state["api"] = {F: fn(("z", "pos", False))}
    state["version"] = "0.1post1"  # not a bump
    assert api.main(["--write", name]) == 1
    state["version"] = "0.2.0"
    assert api.main(["--write", name]) == 0
    assert _written(name) == {"piece": name, "version": "0.2.0", "api": state["api"]}


def test_write_records_additions_as_before(piece):
    name, state = piece
    state["api"] = {F: fn(("x", "pos", False), ("y", "kwonly", False)), "pkg.g": fn()}
    assert api.main(["--write", name]) == 0
    assert _written(name)["api"] == state["api"]


def test_accept_breaking_goes_with_write():
    with pytest.raises(SystemExit):
        api.main(["--check", "--accept-breaking"])
