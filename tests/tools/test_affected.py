"""tools/affected.py: which pieces a change touches (synthetic graphs and the real workspace)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import affected  # noqa: E402

#   a <- b <- c      (c depends on b, b on a)
#   a <- d
#   e                (alone)
GRAPH = {"a": set(), "b": {"a"}, "c": {"b"}, "d": {"a"}, "e": set()}
ORDER = ["a", "b", "c", "d", "e"]
OWNERS = {"pa": "a", "pb": "b", "pb2": "b", "pc": "c", "pd": "d", "pe": "e"}


def run(*paths):
    return affected.affected_pieces(paths, GRAPH, OWNERS, ORDER)


def test_a_leaf_change_affects_only_that_leaf():
    assert run("packages/c/src/torchebm/pc/x.py") == ["c"]
    assert run("tests/pe/test_x.py") == ["e"]


def test_a_root_change_reaches_every_transitive_dependent():
    assert run("packages/a/pyproject.toml") == ["a", "b", "c", "d"]
    assert run("tests/pa/test_x.py") == ["a", "b", "c", "d"]


def test_a_middle_change_reaches_dependents_but_not_dependencies():
    assert run("tests/pb2/test_y.py") == ["b", "c"]
    assert run("packages/b/src/torchebm/pb/y.py", "packages/e/src/torchebm/pe/z.py") == [
        "b",
        "c",
        "e",
    ]


@pytest.mark.parametrize(
    "path",
    [
        "docs/index.md",
        "README.md",
        "packages/c/CHANGELOG.md",
        "examples/00_x.py",
        "benchmarks/run.py",
        "tests/integration/test_x.py",
        "tests/benchmarks_smoke/test_runner.py",
        "api/a.json",
    ],
)
def test_files_no_piece_owns_select_nothing(path):
    assert run(path) == []


@pytest.mark.parametrize(
    "path", ["pyproject.toml", "uv.lock", "noxfile.py", "tools/workspace.py", "tests/conftest.py"]
)
def test_workspace_wide_files_select_every_piece(path):
    assert run(path) == ORDER


def test_closure_is_a_fixed_point_on_a_longer_chain():
    chain = {str(i): ({str(i - 1)} if i else set()) for i in range(6)}
    assert affected.dependents_closure({"2"}, chain) == {"2", "3", "4", "5"}
    assert affected.dependents_closure(set(), chain) == set()


def test_the_workspace_graph_matches_the_layering():
    graph = affected.dependency_graph()
    assert graph["torchebm-core"] == set()
    assert graph["torchebm-samplers"] == {"torchebm-core", "torchebm-flows"}
    assert graph["torchebm-models"] == {"torchebm-core"}
    assert "torchebm-cuda" in graph["torchebm"]  # through the [cuda] extra
    owners = affected.portion_owners()
    assert owners["core"] == "torchebm-core" and owners["couplings"] == "torchebm-flows"
    real = affected.affected_pieces(
        ["packages/torchebm-flows/src/torchebm/flows/x.py"],
        graph,
        owners,
        affected.PIECES,
    )
    assert real == ["torchebm-flows", "torchebm-samplers", "torchebm-losses", "torchebm"]
    cuda = affected.affected_pieces(["tests/cuda/test_x.py"], graph, owners, affected.PIECES)
    assert cuda == ["torchebm-cuda", "torchebm"]


def _git(repo, *args):
    import subprocess

    ident = ["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", *ident, *args], cwd=repo, check=True, capture_output=True)


@pytest.mark.parametrize("committed", [True, False])
def test_a_module_moved_across_pieces_selects_both(tmp_path, monkeypatch, committed):
    old = "packages/torchebm-losses/src/torchebm/losses/_shared.py"
    new = "packages/torchebm-models/src/torchebm/models/_shared.py"
    (tmp_path / old).parent.mkdir(parents=True)
    (tmp_path / old).write_text("def helper():\n    return 1\n" * 20)  # a rename git detects
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "base")
    _git(tmp_path, "checkout", "-q", "-b", "move")
    (tmp_path / new).parent.mkdir(parents=True)
    _git(tmp_path, "mv", old, new)
    if committed:
        _git(tmp_path, "commit", "-q", "-m", "move")
    monkeypatch.setattr(affected, "ROOT", tmp_path)
    files = affected.changed_files("main")
    assert files == sorted([old, new])
    picked = affected.affected_pieces(
        files, affected.dependency_graph(), affected.portion_owners(), affected.PIECES
    )
    assert {"torchebm-losses", "torchebm-models"} <= set(picked)
