"""The pieces a change affects: the pieces whose files changed, and every piece depending on them.

Usage::

    python tools/affected.py <base-ref>     # one piece per line, in workspace order

Used by ``nox -s affected -- <base-ref>``. The changed files are those of
``git diff --no-renames --merge-base <base-ref>`` (committed and uncommitted changes since
the branch left ``<base-ref>``; a moved file counts at its old and its new path) plus
untracked files. A file maps to pieces as follows:

* ``packages/<piece>/...``: that piece;
* ``tests/<portion>/...``: the piece owning ``torchebm.<portion>``;
* ``tests/integration``, ``tests/benchmarks_smoke``, ``benchmarks/``, ``docs/``,
  ``examples/``, Markdown files: no piece (the ``affected`` session always runs
  integration, which holds the cross-package tests and the benchmark smoke tests);
* anything else (``pyproject.toml``, ``uv.lock``, ``noxfile.py``, ``tools/``, ``.ci/``,
  ``tests/conftest.py``...): every piece, since it changes how each one is built or tested.

The dependency graph is read from the pieces' pyproject files (optional dependencies
included: the meta-package's ``cuda`` extra makes it depend on ``torchebm-cuda``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath

from workspace import PIECES, ROOT, portions_of, sibling_requirements

#: Paths (prefixes) whose changes need no piece's own tests.
NO_PIECE = (
    "tests/integration/",
    "tests/benchmarks_smoke/",
    "benchmarks/",
    "docs/",
    "examples/",
    "api/",
)
_NAME = re.compile(r"^(torchebm(-[a-z]+)?)")


def dependency_graph() -> dict[str, set[str]]:
    """piece -> the sibling pieces it declares (optional extras included)."""
    graph: dict[str, set[str]] = {}
    for piece in PIECES:
        reqs = sibling_requirements(piece, include_optional=True)
        graph[piece] = {m.group(1) for r in reqs if (m := _NAME.match(r))}
    return graph


def portion_owners() -> dict[str, str]:
    """portion name (``core``, ``flows``, ...) -> the piece that owns it."""
    return {portion: piece for piece in PIECES for portion in portions_of(piece)}


def pieces_of_path(path: str, pieces: Iterable[str], owners: Mapping[str, str]) -> set[str]:
    """The pieces a changed file belongs to (every piece for workspace-wide files)."""
    pieces = list(pieces)
    parts = PurePosixPath(path).parts
    if path.startswith(NO_PIECE) or path.endswith(".md"):
        return set()
    if len(parts) >= 3 and parts[0] == "packages":
        return {parts[1]} if parts[1] in pieces else set(pieces)
    if len(parts) >= 3 and parts[0] == "tests" and parts[1] in owners:
        return {owners[parts[1]]}
    return set(pieces)


def dependents_closure(changed: Iterable[str], graph: Mapping[str, set[str]]) -> set[str]:
    """``changed`` and every piece that depends on one of them, directly or not."""
    out = set(changed)
    grew = True
    while grew:
        grew = False
        for piece, deps in graph.items():
            if piece not in out and deps & out:
                out.add(piece)
                grew = True
    return out


def affected_pieces(
    paths: Iterable[str],
    graph: Mapping[str, set[str]],
    owners: Mapping[str, str],
    order: Iterable[str],
) -> list[str]:
    """The pieces to test for a change touching ``paths``, in ``order``."""
    order = list(order)
    changed: set[str] = set()
    for path in paths:
        changed |= pieces_of_path(path, order, owners)
    hit = dependents_closure(changed, graph)
    return [p for p in order if p in hit]


def changed_files(base: str) -> list[str]:
    """Files changed since the merge base with ``base`` (working tree) and untracked ones.

    Renames are not detected (``--no-renames``): a file moved from one piece to another
    lists both its old and its new path, so that both pieces are selected.
    """

    def git(*args: str) -> list[str]:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        return [line for line in out.splitlines() if line]

    return sorted(
        set(git("diff", "--name-only", "--no-renames", "--merge-base", base))
        | set(git("ls-files", "--others", "--exclude-standard"))
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tools/affected.py <base-ref>", file=sys.stderr)
        return 2
    for piece in affected_pieces(
        changed_files(argv[0]), dependency_graph(), portion_owners(), PIECES
    ):
        print(piece)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
