#!/usr/bin/env python
r"""Check the built site for markup that shows raw and maths that does not render.

Run after ``mkdocs build --strict``::

    python tools/check_site_html.py [SITE_DIR]      # default: site/

Fails (exit 1) on, outside code (``<code>``, ``<pre>``) and scripts:

* a raw Sphinx role (``:math:`` ``:class:`` ``:meth:`` ``:func:`` ``:ref:`` ``:cite:`` ...
  followed by code or a backtick) or a ``.. math::`` directive;
* unrendered maths: ``$...$`` (also across one line break) / ``$$`` or ``\( \)`` /
  ``\[ \]`` delimiters outside the ``arithmatex`` elements that the KaTeX bundle renders;
* a page with ``arithmatex`` elements that does not load the bundled KaTeX
  (``assets/katex/katex.min.js``, its CSS and ``katex-init.js``, all present in the site),
  and any script or stylesheet loaded from another host (the site must work offline).

Prints the counts (raw roles by name, math elements, pages) and one line per problem;
uses the standard library only.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlparse

ROOT = Path(__file__).resolve().parents[1]
VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}
SKIP = {"code", "pre", "script", "style", "kbd", "samp", "textarea"}
#: Sphinx roles (``py:`` domain prefix optional; ``:cite:p:``-style variants of a role too).
ROLES = "math|class|meth|func|attr|exc|obj|data|const|mod|ref|cite|numref|doc|term|eq"
ROLE_TEXT = re.compile(rf"(?<![\w`]):(?:py:)?({ROLES})(?::[a-z]+)?:$")
ROLE_INLINE = re.compile(rf"(?<![\w`]):(?:py:)?({ROLES})(?::[a-z]+)?:`")
DIRECTIVE = re.compile(r"\.\. math::")
#: ``$$``, or inline ``$x$`` on one line or across one line break (a wrapped paragraph).
DOLLAR = re.compile(r"\$\$|(?<![\\\w])\$(?=\S)[^$\n]*?(?:\n[^$\n]*?)?\S\$(?!\w)")
TEX_DELIMS = re.compile(r"\\\(|\\\)|\\\[|\\\]")
BUNDLE = ("assets/katex/katex.min.js", "assets/katex/katex.min.css")
INIT = "assets/javascripts/katex-init.js"


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool]] = []  # tag, skip, math
        self.roles: Counter = Counter()
        self.directives = 0
        self.dollars: list[str] = []
        self.delims: list[str] = []
        self.math = 0
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._last_text = ""

    @property
    def skipping(self) -> bool:
        return any(s for _, s, _ in self.stack)

    @property
    def in_math(self) -> bool:
        return any(m for _, _, m in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"] or "")
        if tag == "link" and "stylesheet" in (a.get("rel") or ""):
            self.styles.append(a.get("href") or "")
        if tag in VOID:
            return
        math = "arithmatex" in (a.get("class") or "").split()
        self.math += math
        if tag == "code" and not self.skipping and ROLE_TEXT.search(self._last_text):
            self.roles[ROLE_TEXT.search(self._last_text).group(1)] += 1  # :math:<code>x</code>
        self.stack.append((tag, tag in SKIP, math))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break
        self._last_text = ""

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        self._last_text = data
        if self.in_math:
            return
        for m in ROLE_INLINE.finditer(data):
            self.roles[m.group(1)] += 1
        self.directives += len(DIRECTIVE.findall(data))
        self.dollars += [m.group(0) for m in DOLLAR.finditer(data)]
        self.delims += [m.group(0) for m in TEX_DELIMS.finditer(data)]


def check(site: Path) -> tuple[list[str], dict[str, object]]:
    problems: list[str] = []
    roles: Counter = Counter()
    totals = {"pages": 0, "pages with maths": 0, "math elements": 0, "directives": 0}
    for missing in [p for p in (*BUNDLE, INIT) if not (site / p).is_file()]:
        problems.append(f"{missing}: not in the site (is the KaTeX hook in mkdocs.yml?)")
    for path in sorted(site.rglob("*.html")):
        rel = path.relative_to(site).as_posix()
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        page.close()
        totals["pages"] += 1
        roles += page.roles
        totals["directives"] += page.directives
        for name, n in sorted(page.roles.items()):
            problems.append(f"{rel}: {n} raw :{name}: role(s)")
        if page.directives:
            problems.append(f"{rel}: {page.directives} raw '.. math::' directive(s)")
        if page.dollars:
            problems.append(f"{rel}: unrendered $ maths: {page.dollars[:3]}")
        if page.delims:
            problems.append(f"{rel}: TeX delimiters outside maths elements: {page.delims[:3]}")
        for url in page.scripts + page.styles:
            if urlparse(url).scheme in ("http", "https") or url.startswith("//"):
                problems.append(
                    f"{rel}: loads {url} from another host (the site must work offline)"
                )
        if page.math:
            totals["pages with maths"] += 1
            totals["math elements"] += page.math
            loaded = {
                urlparse(urljoin(rel, u)).path.lstrip("/") for u in page.scripts + page.styles
            }
            for need in (*BUNDLE, INIT):
                if need not in loaded:
                    problems.append(f"{rel}: has maths but does not load {need}")
    totals["raw roles"] = dict(roles)
    return problems, totals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("site", nargs="?", type=Path, default=ROOT / "site", help="the built site")
    args = p.parse_args(argv)
    if not (args.site / "index.html").is_file():
        raise SystemExit(f"check_site_html: {args.site} holds no built site (run mkdocs build)")
    problems, totals = check(args.site)
    for line in problems:
        print(line)
    roles = totals.pop("raw roles")
    print(
        "check_site_html: "
        + ", ".join(f"{k} {v}" for k, v in totals.items())
        + f", raw roles {sum(roles.values())} {roles or ''}".rstrip()
        + f"; {len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
