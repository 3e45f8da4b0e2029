"""No run of statements is written twice in packages/ (tools/check_logic_clones.py)."""

from __future__ import annotations

from pathlib import Path

from _support.examples import load_tool

ROOT = Path(__file__).resolve().parents[2]


T = load_tool("check_logic_clones")

_CHECK = '''
def {name}(state, drift, t):
    """Docstrings, signatures and constants do not make a clone."""
    x = get_x(state)
    drift = require("drift", drift, "{hint}")
    h = prep(
        x, {step}
    )
    return run(x, drift, h, t)
'''


def test_finds_the_same_statements_whatever_the_constants():
    a = _CHECK.format(name="step", hint="drift(x, t)", step=0.1)
    b = _CHECK.format(name="integrate", hint="another message", step=2)
    pairs = T.clones({"a.py": a, "b.py": b})
    assert pairs == [(("a.py", 4, 8), ("b.py", 4, 8)), (("a.py", 5, 9), ("b.py", 5, 9))]
    # two copies in one file count; overlapping windows of one run do not
    assert T.clones({"a.py": a + b})[0] == (("a.py", 4, 8), ("a.py", 13, 17))
    assert T.clones({"a.py": a}) == []


def test_other_names_or_fewer_statements_are_no_clone():
    a = _CHECK.format(name="f", hint="h", step=1)
    assert T.clones({"a.py": a, "b.py": a.replace("= prep(", "= prepare(")}) == []
    short = "def f(s):\n    x = g(s)\n    return h(x)\n"
    assert T.clones({"a.py": short, "b.py": short}) == []


def test_no_logic_clone_in_packages(capsys):
    code = T.main([str(ROOT / "packages")])
    out = capsys.readouterr().out
    assert code == 0, out
