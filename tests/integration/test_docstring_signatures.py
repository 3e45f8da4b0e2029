"""The API reference names the real parameters: every ``Args:`` section against the signature.

mkdocstrings renders each public callable's Google ``Args:`` section as its parameter table,
and researchers trust it. For every function and class in the ``__all__`` of every public
module of every piece (classes: the constructor, documented in the class or ``__init__``
docstring, and each public method of the library's classes in its MRO) that has an ``Args:``
section, the section must hold one ``name: text`` entry per parameter of
``inspect.signature`` (``*args``/``**kwargs`` with their stars) and no other.

One convention stands in for an entry: a class may leave a parameter to a base class when its
docstring names the parameter (````name````) and names a base class whose own ``Args:``
documents it (the losses' ``nan_policy``, ``dtype``, ... are documented once, in
[`BaseLoss`][torchebm.core.BaseLoss]).

Outside ``torchebm.core`` (at its line limit) every public callable with parameters renders
them: its docstring has an ``Args:`` section (see `needs_args` for what stands in for one).
"""

from __future__ import annotations

import enum
import importlib
import inspect
import pkgutil
import re
import sys
import warnings
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from workspace import PIECES, portions_of  # noqa: E402

SECTION = re.compile(r"^(\s*)(?:Args|Arguments|Parameters|Keyword Args|Keyword Arguments):\s*$")
ENTRY = re.compile(r"^(\*{0,2}[A-Za-z_]\w*)\s*(?:\([^)]*\))?\s*:(?:\s|$)")

# Parameters a callable's Args section may leave out, each with its reason. Keep it short.
EXEMPT: dict[str, set[str]] = {
    # core at its line limit (packages/torchebm-core/src holds at most 4,000 lines): the
    # analytic models take ``dtype``/``device`` like `GaussianModel`, which documents them
    "torchebm.core._base_model.AckleyModel": {"dtype", "device"},
    "torchebm.core._base_model.DoubleWellModel": {"dtype", "device"},
    "torchebm.core._base_model.HarmonicModel": {"dtype", "device"},
    "torchebm.core._base_model.RastriginModel": {"dtype", "device"},
    "torchebm.core._base_model.RosenbrockModel": {"dtype", "device"},
    # core at its line limit: ``*args``/``**kwargs`` go on to ``nn.Module.__init__``
    "torchebm.core._module.TorchEBMModule": {"*args", "**kwargs"},
}


def parse_args(doc: str | None) -> list[str] | None:
    """Entry names of the ``Args:``-like sections of a cleaned docstring (``None``: no section).

    A line at entry indentation that is not ``name: text`` (``a, b: text``, a stray sentence)
    is returned as ``"<malformed: ...>"``.
    """
    if not doc:
        return None
    lines, names, found, i = doc.splitlines(), [], False, 0
    while i < len(lines):
        match = SECTION.match(lines[i])
        i += 1
        if not match:
            continue
        found, base, indent = True, len(match.group(1)), None
        while i < len(lines):
            line = lines[i]
            depth = len(line) - len(line.lstrip())
            if line.strip() and depth <= base:
                break
            if line.strip() and (indent is None or depth == indent):
                indent = depth
                entry = ENTRY.match(line.strip())
                names.append(entry.group(1) if entry else f"<malformed: {line.strip()[:50]}>")
            i += 1
    return names if found else None


def public_modules() -> list[str]:
    names = []
    for piece in PIECES:
        for portion in portions_of(piece):
            package = importlib.import_module(f"torchebm.{portion}")
            names.append(package.__name__)
            for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
                if not any(part.startswith("_") for part in info.name.split(".")):
                    names.append(info.name)
    return names


def _ours(obj: object) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith("torchebm.")


def _methods(cls: type):
    for klass in cls.__mro__:
        if not _ours(klass):
            continue
        for name, attr in vars(klass).items():
            func = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
            if not name.startswith("_") and inspect.isfunction(func):
                yield f"{klass.__module__}.{klass.__qualname__}.{name}", func


@cache
def public_callables() -> dict[str, object]:
    """``{dotted name: function or class}`` of every public callable of the library."""
    found: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated aliases warn on access
        for module_name in public_modules():
            module = importlib.import_module(module_name)
            for name in getattr(module, "__all__", []):
                obj = getattr(module, name)
                if not _ours(obj) or not callable(obj):
                    continue
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
                if inspect.isclass(obj):
                    found.update(_methods(obj))
    return found


def _own_doc(obj: object) -> str | None:
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
    return inspect.cleandoc(doc) if isinstance(doc, str) else None


def documented(obj: object) -> tuple[list[str] | None, str]:
    """The Args entries of ``obj`` (a class: its docstring's and its ``__init__``'s) and text."""
    if not inspect.isclass(obj):
        doc = _own_doc(obj)
        return parse_args(doc), doc or ""
    init = vars(obj).get("__init__")
    docs = [_own_doc(obj), _own_doc(init) if inspect.isfunction(init) else None]
    parsed = [p for p in map(parse_args, docs) if p is not None]
    return (sum(parsed, []) if parsed else None), "\n".join(d for d in docs if d)


def parameters(obj: object) -> list[str]:
    params = list(inspect.signature(obj).parameters.values())
    if not inspect.isclass(obj) and "." in obj.__qualname__ and params:
        if params[0].name in ("self", "cls"):
            params = params[1:]
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return [stars.get(p.kind, "") + p.name for p in params]


def left_to_a_base(cls: type, text: str) -> set[str]:
    """Parameters ``cls``'s docstring names and leaves to a base class it names."""
    out: set[str] = set()
    for base in cls.__mro__[1:]:
        if _ours(base) and re.search(rf"\b{base.__name__}\b", text):
            entries, _ = documented(base)
            out |= {n for n in entries or () if f"`{n}`" in text}
    return out


def problems(name: str, obj: object) -> list[str]:
    entries, text = documented(obj)
    if entries is None:
        return []
    params = parameters(obj)
    allowed = EXEMPT.get(name, set())
    if inspect.isclass(obj):
        allowed = allowed | left_to_a_base(obj, text)
    malformed = [e for e in entries if e.startswith("<malformed")]
    out = [f"{name}: {e}" for e in malformed]
    named = [e for e in entries if e not in malformed]
    out += [f"{name}: documents `{e}`, not a parameter" for e in named if e not in params]
    out += [f"{name}: `{e}` documented twice" for e in set(entries) if entries.count(e) > 1]
    missing = [p for p in params if p not in entries and p not in allowed]
    return out + [f"{name}: parameter `{p}` missing from Args" for p in missing]


def test_every_args_section_names_exactly_the_parameters():
    found = public_callables()
    checked = {n: o for n, o in found.items() if documented(o)[0] is not None}
    assert len(checked) > 150, f"expected the library's documented callables, got {len(checked)}"
    bad = [p for name, obj in sorted(checked.items()) for p in problems(name, obj)]
    assert not bad, "Args sections that disagree with the signature:\n" + "\n".join(bad)


# Public callables outside core that may render without an Args section, each with its reason.
NO_ARGS_OK: dict[str, str] = {}


def _rendered_base(cls: type, name: str) -> tuple[type, object] | None:
    """The nearest base of ``cls`` (ours) defining method ``name``, with the function."""
    for base in cls.__mro__[1:]:
        attr = vars(base).get(name)
        func = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
        if _ours(base) and inspect.isfunction(func):
            return base, func
    return None


def _in_core(obj: object) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith("torchebm.core")


def needs_args(name: str, obj: object, owner: type | None = None) -> str | None:
    """Why ``obj`` renders its parameters undocumented, or ``None`` when it does not.

    The reference (mkdocstrings: ``show_if_no_docstring: false``, no inherited members, no
    docstring inheritance) renders a callable with a docstring; it documents the parameters
    when that docstring has an ``Args:`` section. What stands in for one: a class whose
    docstring has ``Attributes:`` (a result record, its fields) or says its arguments are
    "as in [`Base`][...]" for a base whose Args name exactly its parameters; a method without
    a docstring (not rendered) overriding a base method with the same parameters, which
    renders on the base's page (a core base: core's gaps are not tested here).
    """
    if _in_core(obj) or name in NO_ARGS_OK or not parameters(obj):
        return None
    entries, text = documented(obj)
    if entries is not None:
        return None
    if inspect.isclass(obj):
        if issubclass(obj, enum.Enum) or re.search(r"(?m)^\s*Attributes:\s*$", text):
            return None
        for base in obj.__mro__[1:]:
            if _ours(base) and re.search(rf"as in \[`{base.__name__}`\]", text):
                base_entries = documented(base)[0] or []
                if sorted(base_entries) == sorted(parameters(obj)):
                    return None
        return f"{name}: class with parameters {parameters(obj)} and no Args"
    if owner is not None and obj.__doc__ is None:
        found = _rendered_base(owner, obj.__name__)
        if found and parameters(found[1]) == parameters(obj):
            base, func = found
            return needs_args(f"{base.__qualname__}.{obj.__name__}", func, base)
    return f"{name}: parameters {parameters(obj)} and no Args"


def test_every_public_callable_outside_core_documents_its_parameters():
    owners = {
        f"{k.__module__}.{k.__qualname__}": k
        for c in public_callables().values()
        if inspect.isclass(c)
        for k in c.__mro__
    }
    exported = {id(c) for c in public_callables().values() if inspect.isclass(c)}
    bad = []
    for name, obj in sorted(public_callables().items()):
        owner = owners.get(name.rpartition(".")[0]) if not inspect.isclass(obj) else None
        if owner is not None and id(owner) not in exported:
            continue  # a method of a base the reference does not render (not exported)
        problem = needs_args(name, obj, owner)
        if problem:
            bad.append(problem)
    assert not bad, "public callables rendering undocumented parameters:\n" + "\n".join(bad)


def test_exemptions_are_still_needed():
    found = public_callables()
    for name, params in EXEMPT.items():
        assert name in found, f"exempted {name} is no longer a public callable"
        entries, _ = documented(found[name])
        assert entries is not None, name
        assert params <= set(parameters(found[name])), (name, params)
        assert not params & set(entries), f"{name} documents {params & set(entries)} now"


def _sample(a: int, b: int = 0, *args: int, c: int = 1, **kwargs: int) -> None:
    """Sample.

    Args:
        a: First.
        bb: Misspelt.
        *args: More.
        c, kwargs: Two in one entry.

    Returns:
        Nothing.
    """


def test_the_check_catches_what_it_should():
    assert parse_args(inspect.cleandoc(_sample.__doc__)) == [
        "a",
        "bb",
        "*args",
        "<malformed: c, kwargs: Two in one entry.>",
    ]
    found = problems("_sample", _sample)
    assert "_sample: documents `bb`, not a parameter" in found
    assert "_sample: parameter `b` missing from Args" in found
    assert "_sample: parameter `c` missing from Args" in found
    assert "_sample: parameter `**kwargs` missing from Args" in found
    assert "_sample: <malformed: c, kwargs: Two in one entry.>" in found
    assert parse_args("Summary.\n\nReturns:\n    x: not an argument.") is None
    assert needs_args("_sample", _sample) is None  # it has an Args section
    assert needs_args("m", lambda a: a) == "m: parameters ['a'] and no Args"
