#!/usr/bin/env python
r"""Convert the Sphinx/RST markup of the docstrings under ``packages/`` to Markdown.

The API reference is rendered by mkdocstrings, which reads docstrings as Markdown: a
Sphinx role (``:math:`x```, ``:class:`Foo```) or a ``.. math::`` directive would be
printed raw. The house convention is Markdown with MathJax/KaTeX-style maths:

* ``:math:`x``` becomes ``$x$`` (rendered by ``pymdownx.arithmatex``);
* a ``.. math::`` block becomes a ``$$`` ... ``$$`` display block (wrapped in
  ``\begin{aligned}`` when it holds ``&`` or ``\\``, as Sphinx does for multi-line maths);
* RST's escaped space after inline markup (````Foo``\ s``) is dropped;
* ``:class:``, ``:meth:``, ``:func:``, ``:attr:``, ``:exc:``, ``:obj:``, ``:data:``,
  ``:const:``, ``:mod:`` become a mkdocstrings cross-reference
  ``[`Foo`][torchebm.core.Foo]`` when the target is rendered in the API reference (a
  public name of a portion listed in ``docs/reference/*.md``, with a docstring of its
  own), else plain code: ```` `Foo` ````.

Only docstrings are touched: string-literal statements (module, class, function and
attribute docstrings), strings assigned to ``doc``/``__doc__`` (docstrings made at run
time) and ``#:`` attribute comments (plain code there); other code, comments and strings
are left alone. The conversion is
idempotent: a converted file has no role left, so a second run changes nothing.

Usage::

    python tools/convert_docstrings.py            # convert packages/**/*.py in place
    python tools/convert_docstrings.py --check    # list leftover Sphinx markup, exit 1 if any
    python tools/convert_docstrings.py --diff     # show what would change, write nothing

``--check`` needs only the standard library; converting imports the pieces (run it in
the workspace venv) to decide which cross-references resolve.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import inspect
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"
REFERENCE = ROOT / "docs" / "reference"

#: Any Sphinx role (``:name:`text```, ``:py:name:`text```) and the ``.. math::`` directive.
ROLE = re.compile(r":(?:py:)?(math|class|meth|func|attr|exc|obj|data|const|mod):`([^`]+)`")
DIRECTIVE = re.compile(r"(?m)^\s*\.\. math::")
#: What ``--check`` (and the lint test) reject: every role name, not only the converted ones.
ANY_ROLE = re.compile(r"(?<![\w`]):(?:py:)?[a-z]+:`[^`\s][^`]*`")
#: RST's escaped space after inline markup (````Foo``\ s``), which Markdown prints raw.
ESCAPED_SPACE = re.compile(r"(?<=`)\\ ")


# --------------------------------------------------------------------------- docstrings
@dataclass
class Docstring:
    start: int  # offsets of the string literal in the source text
    end: int
    module: str  # dotted module the file defines
    owner: str | None  # qualname of the enclosing class, if any


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGES).parts  # <dist>/src/torchebm/.../x.py
    dotted = list(parts[2:])
    dotted[-1] = dotted[-1][:-3]
    if dotted[-1] == "__init__":
        dotted.pop()
    return ".".join(dotted)


def docstrings(source: str, module: str) -> list[Docstring]:
    """Every string-literal statement of ``source`` with its enclosing class."""
    tree = ast.parse(source)
    line_starts = [0]
    for line in source.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    lines = source.splitlines(keepends=True)

    def offset(lineno: int, col: int) -> int:  # ast columns are UTF-8 byte offsets
        text = lines[lineno - 1].encode("utf-8")[:col].decode("utf-8")
        return line_starts[lineno - 1] + len(text)

    found: list[Docstring] = []

    def visit(body: list[ast.stmt], owner: str | None) -> None:
        for node in body:
            if (
                isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                v = node.value
                assert v.end_lineno is not None and v.end_col_offset is not None
                found.append(
                    Docstring(
                        offset(v.lineno, v.col_offset),
                        offset(v.end_lineno, v.end_col_offset),
                        module,
                        owner,
                    )
                )
            elif isinstance(node, ast.Assign) and _is_doc_target(node.targets):
                v = node.value
                if isinstance(v, ast.JoinedStr) or (
                    isinstance(v, ast.Constant) and isinstance(v.value, str)
                ):
                    assert v.end_lineno is not None and v.end_col_offset is not None
                    found.append(
                        Docstring(
                            offset(v.lineno, v.col_offset),
                            offset(v.end_lineno, v.end_col_offset),
                            module,
                            owner,
                        )
                    )
            elif isinstance(node, ast.ClassDef):
                visit(node.body, f"{owner}.{node.name}" if owner else node.name)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, owner)
            elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                visit(node.body, owner)
                visit(getattr(node, "orelse", []), owner)

    visit(tree.body, None)
    return found


def _is_doc_target(targets: list[ast.expr]) -> bool:
    """``doc = ...``, ``__doc__ = ...`` or ``obj.__doc__ = ...``: a docstring made at run time."""
    return any(
        (isinstance(t, ast.Name) and t.id in ("doc", "__doc__"))
        or (isinstance(t, ast.Attribute) and t.attr == "__doc__")
        for t in targets
    )


# --------------------------------------------------------------------------- maths
def convert_math_blocks(text: str) -> str:
    """``.. math::`` directives -> ``$$`` display blocks at the directive's indentation."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)\.\. math::[ \t]*(.*)$", lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent = m.group(1)
        body = [m.group(2)] if m.group(2).strip() else []
        j = i + 1
        while j < len(lines) and (
            not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > len(indent)
        ):
            j += 1
        while j > i + 1 and not lines[j - 1].strip():  # trailing blank lines stay outside
            j -= 1
        block = lines[i + 1 : j]
        nonblank = [ln for ln in block if ln.strip()]
        cut = min((len(ln) - len(ln.lstrip()) for ln in nonblank), default=0)
        tex = body + [ln[cut:].rstrip() for ln in block]
        while tex and not tex[0].strip():
            tex.pop(0)
        while tex and not tex[-1].strip():
            tex.pop()
        tex = [ln for ln in tex if ln.strip()]  # a blank line would end the Markdown block
        if any("&" in ln or "\\\\" in ln for ln in tex):
            tex = ["\\begin{aligned}", *tex, "\\end{aligned}"]
        if out and out[-1].strip():
            out.append("")
        out += [indent + "$$"] + [indent + ln if ln else "" for ln in tex] + [indent + "$$"]
        i = j
    return "\n".join(out)


# --------------------------------------------------------------------------- references
class Resolver:
    """Map role targets to the identifiers mkdocstrings renders in docs/reference/."""

    def __init__(self) -> None:
        self.public: dict[tuple[str, str], str] = {}
        self.modules: list[str] = []
        for page in sorted(REFERENCE.glob("*.md")):
            for line in page.read_text(encoding="utf-8").splitlines():
                m = re.match(r"^:::\s+([\w.]+)\s*$", line.strip())
                if m:
                    self.modules.append(m.group(1))
        for name in self.modules:
            mod = importlib.import_module(name)
            for attr in getattr(mod, "__all__", []):
                obj = getattr(mod, attr, None)
                key = _key(obj)
                if key and _own_doc(obj):
                    self.public.setdefault(key, f"{name}.{attr}")

    def resolve(self, role: str, target: str, doc: Docstring) -> str | None:
        """The rendered identifier of ``target`` seen from ``doc``, or None."""
        if role == "mod":
            return None  # module roots are rendered without a heading: no anchor
        target = target.lstrip("~.")
        parts = target.split(".")
        obj, rest = self._lookup(parts, doc)
        if obj is None:
            return None
        if not rest:
            return self.public.get(_key(obj) or ("", ""))
        if len(rest) == 1 and inspect.isclass(obj):
            return self._member(obj, rest[0])
        return None

    def _lookup(self, parts: list[str], doc: Docstring) -> tuple[object | None, list[str]]:
        if parts[0] == "torchebm":
            for n in range(len(parts), 0, -1):
                try:
                    obj: object = importlib.import_module(".".join(parts[:n]))
                except ImportError:
                    continue
                return _walk(obj, parts[n:])
            return None, []
        try:
            module = importlib.import_module(doc.module)
        except ImportError:
            return None, []
        if doc.owner and len(parts) == 1:
            owner: object = module
            for p in doc.owner.split("."):
                owner = getattr(owner, p, None)
            if inspect.isclass(owner) and any(parts[0] in c.__dict__ for c in owner.__mro__):
                return owner, parts
        if hasattr(module, parts[0]):
            return _walk(getattr(module, parts[0]), parts[1:])
        return None, []

    def _member(self, cls: type, name: str) -> str | None:
        if name.startswith("_"):
            return None
        for klass in cls.__mro__:
            if name in klass.__dict__:
                member = klass.__dict__[name]
                base = self.public.get(_key(klass) or ("", ""))
                fn = getattr(member, "__func__", None) or getattr(member, "fget", None) or member
                if base and (callable(fn) or isinstance(member, property)) and _own_doc(fn):
                    return f"{base}.{name}"
                return None
        return None


def _walk(obj: object, rest: list[str]) -> tuple[object | None, list[str]]:
    """Follow attributes while they are modules or classes; the rest names a member."""
    while rest and (inspect.ismodule(obj) or (inspect.isclass(obj) and len(rest) > 1)):
        if not hasattr(obj, rest[0]):
            return None, []
        obj, rest = getattr(obj, rest[0]), rest[1:]
    return obj, rest


def _key(obj: object) -> tuple[str, str] | None:
    mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(mod, str) and isinstance(qual, str) and mod.startswith("torchebm"):
        return mod, qual
    return None


def _own_doc(obj: object) -> bool:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return bool(doc and doc.strip())


def convert_roles(
    text: str, doc: Docstring, resolve: Callable[[str, str, Docstring], str | None], stats: Counter
) -> str:
    def repl(m: re.Match[str]) -> str:
        role, body = m.group(1), m.group(2)
        if role == "math":
            stats["math"] += 1
            return f"${body.strip()}$"
        title = re.match(r"^(.*?)\s*<([^<>]+)>$", body)
        label, target = (title.group(1), title.group(2)) if title else (None, body)
        if label is None:
            label = target.lstrip("~.").split(".")[-1] if target.startswith("~") else target
            label = label.lstrip(".")
        ident = resolve(role, target, doc)
        if ident:
            stats["link"] += 1
            return f"[`{label}`][{ident}]"
        stats["code"] += 1
        return f"`{label}`"

    return ROLE.sub(repl, text)


# --------------------------------------------------------------------------- driver
def convert_source(
    source: str, module: str, resolve: Callable[[str, str, Docstring], str | None], stats: Counter
) -> str:
    pieces, last = [], 0
    for doc in docstrings(source, module):
        text = source[doc.start : doc.end]
        if ROLE.search(text) or DIRECTIVE.search(text) or ESCAPED_SPACE.search(text):
            if DIRECTIVE.search(text):
                stats["math block"] += len(re.findall(r"(?m)^\s*\.\. math::", text))
                text = convert_math_blocks(text)
            text = convert_roles(text, doc, resolve, stats)
            stats["escaped space"] += len(ESCAPED_SPACE.findall(text))
            text = ESCAPED_SPACE.sub("", text)
        pieces += [source[last : doc.start], text]
        last = doc.end
    pieces.append(source[last:])
    out = "".join(pieces)
    # ``#:`` attribute comments document attributes too; they are not rendered: plain code.
    doc = Docstring(0, 0, module, None)
    return re.sub(
        r"(?m)^([ \t]*#:.*)$",
        lambda m: convert_roles(m.group(1), doc, lambda *_: None, stats),
        out,
    )


def python_files(paths: list[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_file():
            yield p
        else:
            yield from sorted(
                f for f in p.rglob("*.py") if not any(part.startswith(".") for part in f.parts)
            )


def leftovers(source: str) -> list[tuple[int, str]]:
    """Line numbers and text of the Sphinx markup left in ``source`` (whole file)."""
    return [
        (n, line.strip())
        for n, line in enumerate(source.splitlines(), 1)
        if ANY_ROLE.search(line) or DIRECTIVE.search(line) or ESCAPED_SPACE.search(line)
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", type=Path, help="files or folders (default: packages/)")
    p.add_argument("--check", action="store_true", help="report leftover markup, exit 1 if any")
    p.add_argument("--diff", action="store_true", help="print a diff, write nothing")
    args = p.parse_args(argv)
    files = list(python_files([x.resolve() for x in args.paths] or [PACKAGES]))

    if args.check:
        bad = 0
        for f in files:
            for n, text in leftovers(f.read_text(encoding="utf-8")):
                print(f"{f.relative_to(ROOT)}:{n}: Sphinx markup in a docstring: {text}")
                bad += 1
        print(f"convert_docstrings --check: {len(files)} files, {bad} lines with Sphinx markup")
        return 1 if bad else 0

    resolver = Resolver()
    stats: Counter = Counter()
    changed = 0
    for f in files:
        source = f.read_text(encoding="utf-8")
        new = convert_source(source, module_name(f), resolver.resolve, stats)
        if new == source:
            continue
        changed += 1
        if args.diff:
            rel = str(f.relative_to(ROOT))
            sys.stdout.writelines(
                difflib.unified_diff(
                    source.splitlines(True), new.splitlines(True), f"a/{rel}", f"b/{rel}"
                )
            )
        else:
            f.write_text(new, encoding="utf-8")
    print(
        f"convert_docstrings: {changed} files {'would change' if args.diff else 'changed'}; "
        f"{stats['math']} :math: roles, {stats['math block']} math blocks, "
        f"{stats['link']} cross-references, {stats['code']} plain-code references, "
        f"{stats['escaped space']} escaped spaces"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
