"""tools/check_site_html.py: raw Sphinx roles and unrendered maths in built pages are found."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import check_site_html as csh  # noqa: E402


def page(html):
    p = csh.Page()
    p.feed(html)
    p.close()
    return p


@pytest.mark.parametrize(
    "html, role",
    [
        ("<p>see :ref:`sec-x` below</p>", "ref"),
        ("<p>as in :cite:`song2021`</p>", "cite"),
        ("<p>as in :cite:p:`song2021`</p>", "cite"),
        ("<p>see :ref:<code>sec-x</code></p>", "ref"),
        ("<p>the :py:class:`Sampler`</p>", "class"),
        ("<p>with :math:`x^2`</p>", "math"),
    ],
)
def test_raw_roles_are_counted(html, role):
    assert dict(page(html).roles) == {role: 1}


@pytest.mark.parametrize(
    "html",
    [
        "<p>the energy $E(x)$ here</p>",
        "<p>the energy $E(x) +\nU(x)$, wrapped</p>",
        "<p>display $$ x $$</p>",
    ],
)
def test_unrendered_dollar_maths_is_found(html):
    assert page(html).dollars


@pytest.mark.parametrize(
    "html",
    [
        "<p>costs $5 and\nthen $10 more</p>",  # prices, not maths
        "<p>a <code>:ref:`x`</code> and <code>$x$</code> in code</p>",
        '<p><span class="arithmatex">$E(x)$</span> rendered</p>',
        "<p>time 10:30 and a: colon</p>",
        "<p>one $a\n\nb$ two line breaks</p>",
    ],
)
def test_no_false_positives(html):
    p = page(html)
    assert not p.roles and not p.dollars


def _site(tmp_path, body):
    for rel in (*csh.BUNDLE, csh.INIT):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "index.html").write_text(f"<html><body>{body}</body></html>")
    return tmp_path


def test_a_site_with_a_raw_ref_or_wrapped_maths_fails(tmp_path, capsys):
    site = _site(tmp_path, "<p>see :ref:`a` and $x\n+ y$</p>")
    problems, _ = csh.check(site)
    assert problems == [
        "index.html: 1 raw :ref: role(s)",
        "index.html: unrendered $ maths: ['$x\\n+ y$']",
    ]
    assert csh.main([str(site)]) == 1
    assert csh.main([str(_site(tmp_path, "<p>clean</p>"))]) == 0


def test_the_built_site_has_no_problem():
    site = ROOT / "site"
    if not (site / "index.html").is_file():
        pytest.skip("no built site (mkdocs build)")
    assert csh.check(site)[0] == []
