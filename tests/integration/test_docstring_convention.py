"""The docstring convention: Markdown and `$...$` maths, never Sphinx/RST markup.

mkdocstrings renders docstrings as Markdown, so a Sphinx role (``:math:`x```,
``:class:`Foo```) or a ``.. math::`` directive would show raw in the API reference.
``tools/convert_docstrings.py`` converts them; this test keeps them out.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _support.examples import load_tool

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ROOT / "packages"

ROLE = re.compile(r"(?<![\w`]):(?:py:)?[a-z]+:`[^`\s][^`]*`")
DIRECTIVE = re.compile(r"^\s*\.\. math::")
ESCAPED_SPACE = re.compile(r"(?<=`)\\ ")  # RST's ``Foo``\ s


def _tool():
    return load_tool("convert_docstrings")


def test_no_sphinx_markup_in_packages():
    files = sorted(PACKAGES.rglob("*.py"))
    assert len(files) > 50, f"expected the workspace's sources under {PACKAGES}"
    bad = [
        f"{f.relative_to(ROOT)}:{n}: {line.strip()}"
        for f in files
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
        if ROLE.search(line) or DIRECTIVE.search(line) or ESCAPED_SPACE.search(line)
    ]
    assert not bad, (
        "Sphinx/RST markup in packages/ (write $x$, $$ ... $$ and [`Foo`][torchebm.x.Foo] or "
        "`Foo`; `python tools/convert_docstrings.py` converts it):\n" + "\n".join(bad)
    )


def test_the_lint_pattern_catches_what_it_should():
    for text in (":math:`x`", ":class:`~torchebm.core.Foo`", ":py:func:`f`", ":meth:`a.b`"):
        assert ROLE.search(f"    Uses {text} here.")
    for text in ("`x`", "$x$", "[`Foo`][torchebm.core.Foo]", "a: `b`", "``x``"):
        assert not ROLE.search(text)
    assert DIRECTIVE.search("    .. math::")
    assert ESCAPED_SPACE.search("``BaseModel``\\ s") and not ESCAPED_SPACE.search("`a` b")


SAMPLE = r'''"""Module docstring with :math:`x^2` and :mod:`torchebm.core`."""

LABEL = ":math:`not a docstring`"
#: Attribute comment naming :func:`nowhere`.


def alias():
    doc = f"Alias of :class:`{LABEL}`."
    return doc


class Thing:
    r"""Uses :class:`~torchebm.core.GaussianModel` and :func:`nowhere`.

    .. math::

        a &= b \\
        c &= d

    Tail :math:` y `, ``Thing``\ s.
    """
'''


def test_converter_converts_docstrings_only_and_is_idempotent():
    pytest.importorskip("torchebm.core")
    tool = _tool()
    resolver = tool.Resolver()
    stats: dict = {}
    from collections import Counter

    stats = Counter()
    out = tool.convert_source(SAMPLE, "torchebm.core._sample", resolver.resolve, stats)
    assert '"""Module docstring with $x^2$ and `torchebm.core`."""' in out
    assert 'LABEL = ":math:`not a docstring`"' in out  # code is left alone
    assert "[`GaussianModel`][torchebm.core.GaussianModel]" in out
    assert "`nowhere`" in out and "[`nowhere`]" not in out
    assert "#: Attribute comment naming `nowhere`." in out
    assert 'doc = f"Alias of `{LABEL}`."' in out
    assert (
        "    $$\n    \\begin{aligned}\n    a &= b \\\\\n    c &= d\n    \\end{aligned}\n    $$\n"
        in out
    )
    assert "Tail $y$, ``Thing``s." in out
    assert stats == {"math": 2, "math block": 1, "link": 1, "code": 4, "escaped space": 1}
    again = tool.convert_source(out, "torchebm.core._sample", resolver.resolve, Counter())
    assert again == out
