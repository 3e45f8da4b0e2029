"""No function in ``packages/`` is longer than 80 lines of code (DESIGN section 5).

A line of code is a physical line of the function's body that is not blank, not only a
comment, and not part of the docstring; the ``def`` line and decorators are not counted.
Nested functions count within their parent and are also checked on their own.

Usage: ``python tools/check_function_length.py [--limit N] [PATH ...]`` (default: packages).
Prints every offender grouped per file (``path:line name length``) and exits 1 if any, or
when the paths hold no Python file (nothing checked); a path that does not exist is an error.
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

LIMIT = 80
ROOT = Path(__file__).resolve().parent.parent

__all__ = ["LIMIT", "code_lines", "long_functions", "main"]


def _comment_or_blank_lines(source: str) -> set[int]:
    """Line numbers holding only a comment or whitespace."""
    lines = source.splitlines()
    code = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (
            tokenize.COMMENT,
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        ):
            continue
        code.update(range(tok.start[0], tok.end[0] + 1))
    return {i for i in range(1, len(lines) + 1) if i not in code}


def _docstring_lines(fn: ast.AST) -> set[int]:
    body = getattr(fn, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            return set(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    return set()


def code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef, skip: set[int]) -> int:
    """Lines of code in ``fn``'s body (no docstring, blank or comment-only lines)."""
    start = fn.body[0].lineno
    end = fn.end_lineno or start
    doc = _docstring_lines(fn)
    return sum(1 for i in range(start, end + 1) if i not in skip and i not in doc)


def long_functions(source: str, limit: int = LIMIT) -> Iterator[tuple[int, str, int]]:
    """``(line, qualified name, length)`` of every function in ``source`` over ``limit``."""
    tree = ast.parse(source)
    skip = _comment_or_blank_lines(source)

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[int, str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                n = code_lines(child, skip)
                if n > limit:
                    yield child.lineno, name, n
                yield from visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
            else:
                yield from visit(child, prefix)

    yield from visit(tree, "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[ROOT / "packages"])
    parser.add_argument("--limit", type=int, default=LIMIT)
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such path: {', '.join(missing)}")
    files = sorted(f for p in args.paths for f in ([p] if p.is_file() else p.rglob("*.py")))
    if not files:
        print(f"no Python file under {', '.join(map(str, args.paths))}: nothing was checked")
        return 1
    bad = 0
    for f in files:
        found = list(long_functions(f.read_text(encoding="utf-8"), args.limit))
        if found:
            rel = f.resolve().relative_to(ROOT) if f.resolve().is_relative_to(ROOT) else f
            print(f"{rel}:")
            for line, name, n in found:
                print(f"  {line:5d}  {name}  {n} lines")
            bad += len(found)
    if bad:
        print(f"{bad} function(s) longer than {args.limit} lines of code")
        return 1
    print(f"ok: no function longer than {args.limit} lines of code in {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
