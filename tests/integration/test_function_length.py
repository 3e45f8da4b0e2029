"""No function in packages/ is longer than 80 lines of code (tools/check_function_length.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from _support.examples import load_tool

ROOT = Path(__file__).resolve().parents[2]


T = load_tool("check_function_length")


def _function(n_code: int) -> str:
    body = "\n".join(f"    x{i} = {i}  # code" for i in range(n_code))
    return f'def f():\n    """Doc\n\n    lines.\n    """\n    # a comment\n\n{body}\n'


def test_counts_code_lines_only():
    assert list(T.long_functions(_function(80))) == []
    assert list(T.long_functions(_function(81))) == [(1, "f", 81)]
    src = "class A:\n" + textwrap.indent(_function(81), "    ")
    assert [name for _, name, _ in T.long_functions(src)] == ["A.f"]
    multi = "def g():\n    y = (\n        1,\n        2,\n    )\n"
    assert list(T.long_functions(multi, limit=3)) == [(1, "g", 4)]


def test_no_long_function_in_packages(capsys):
    code = T.main([str(ROOT / "packages")])
    out = capsys.readouterr().out
    assert code == 0, out
