"""No logic is written twice in ``packages/``: the check behind "`duplicates` reports no logic pairs".

`duplicates` (the text-level tool of the workplace) pairs any six lines of the same shape,
so it also reports what an explicit API repeats by design: signatures, docstrings, import
lists. This check reads the code instead. Every block of statements (a module, class or
function body, the body of an ``if``/``for``/``with``/``try``...) is cut into windows of
``MIN_STATEMENTS`` consecutive statements; docstrings, imports and nested ``def``/``class``
statements (checked as their own blocks) are left out, and a window must span at least
``MIN_LINES`` source lines. Two windows are a clone when their statements are equal as
ASTs with every constant replaced by one placeholder: the same calls on the same names,
whatever the strings and numbers (an error message, a default).

Usage: ``python tools/check_logic_clones.py [PATH ...]`` (default: packages). Prints every
clone (``path:first-last ~ path:first-last``) and exits 1 if any, or when the paths hold
no Python file (nothing checked); a path that does not exist is an error.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

MIN_STATEMENTS = 3
MIN_LINES = 4
ROOT = Path(__file__).resolve().parent.parent

__all__ = ["MIN_LINES", "MIN_STATEMENTS", "clones", "main"]

Place = tuple[str, int, int]  # (path, first line, last line)


class _Constants(ast.NodeTransformer):
    """Every constant becomes the same placeholder: windows differing in values only match."""

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        return ast.copy_location(ast.Constant(value=...), node)


def _skipped(stmt: ast.stmt) -> bool:
    docstring = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
    nested = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return docstring or isinstance(stmt, nested)


def _blocks(tree: ast.AST) -> Iterator[list[ast.stmt]]:
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                yield [s for s in block if not _skipped(s)]


def _key(stmt: ast.stmt) -> str:
    copy = ast.parse(ast.unparse(stmt)).body[0]  # a fresh tree: the transform is in place
    return ast.dump(_Constants().visit(copy), annotate_fields=False)


def _windows(path: str, source: str) -> Iterator[tuple[tuple[str, ...], Place]]:
    for block in _blocks(ast.parse(source)):
        keys = [_key(s) for s in block]
        for i in range(len(block) - MIN_STATEMENTS + 1):
            first, last = block[i], block[i + MIN_STATEMENTS - 1]
            end = last.end_lineno or last.lineno
            if end - first.lineno + 1 >= MIN_LINES:
                yield tuple(keys[i : i + MIN_STATEMENTS]), (path, first.lineno, end)


def clones(sources: dict[str, str]) -> list[tuple[Place, Place]]:
    """Pairs of places (``path -> source`` in) holding the same window of statements."""
    seen: dict[tuple[str, ...], list[Place]] = defaultdict(list)
    for path, source in sorted(sources.items()):
        for key, place in _windows(path, source):
            seen[key].append(place)
    pairs = []
    for places in seen.values():
        for i, a in enumerate(places):
            pairs.extend((a, b) for b in places[i + 1 :] if a[0] != b[0] or a[2] < b[1])
    return sorted(pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=[str(ROOT / "packages")])
    args = parser.parse_args(argv)
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        parser.error(f"no such path: {', '.join(missing)}")
    files = [f for p in map(Path, args.paths) for f in (p.rglob("*.py") if p.is_dir() else [p])]
    if not files:
        print(f"no Python file under {', '.join(args.paths)}: nothing was checked")
        return 1
    sources = {
        str(f.relative_to(ROOT) if f.is_relative_to(ROOT) else f): f.read_text() for f in files
    }
    found = clones(sources)
    for (pa, a0, a1), (pb, b0, b1) in found:
        print(f"{pa}:{a0}-{a1} ~ {pb}:{b0}-{b1}")
    print(f"{len(found)} repeated run(s) of {MIN_STATEMENTS}+ statements in {len(files)} files")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
