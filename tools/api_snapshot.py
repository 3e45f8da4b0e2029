"""The public-API gate: a committed snapshot of each piece's public API, and the comparison.

Usage::

    python tools/api_snapshot.py --write [PIECE ...]   # (re)write api/<piece>.json
    python tools/api_snapshot.py --write --accept-breaking PIECE  # record a break as is
    python tools/api_snapshot.py --check [PIECE ...]   # compare with the snapshots (nox -s api)

The public API of a piece is read statically with griffe (no import): for each portion
``torchebm.<x>`` it owns, the names in ``__all__`` (or, without ``__all__``, the
non-underscore names the module defines), recursively through its public submodules
(``torchebm.core.distributed``...). Each entry records its kind (module, class, function,
attribute) and, for callables, the parameters: name, kind (positional-only, positional or
keyword, keyword-only, ``*args``, ``**kwargs``), whether it is required and its default's
source text (snapshots written before defaults were recorded compare without them). A class
records its constructor's parameters and its public methods and attributes (inherited
ones from TorchEBM bases included).

``--check`` compares the current API with ``api/<piece>.json``, which also records the
piece's version when it was written:

* a **breaking change** (a name removed, a kind changed, a parameter removed or renamed,
  moved, made keyword-only or required, a new required parameter, a default that names
  another value, ``*args``/``**kwargs`` removed) fails unless the piece's version made the bump DESIGN's release rules ask for
  (0.x: a new minor, e.g. 0.1.3 -> 0.2.0; from 1.0: a new major); the report names every
  break;
* **additions** (new names, new optional parameters) pass; the report lists them and
  says how to refresh the snapshot.

Refresh the snapshots at each release (after ``uv version --package ... --bump``), or
after adding public names: ``python tools/api_snapshot.py --write`` (needs griffe: e.g.
``uv run --group api python tools/api_snapshot.py --write``). ``--write`` compares with the
existing snapshot first and refuses (exit 1, naming every break, nothing written) to record
a breaking change that the piece's version has not made the bump for; additions are
written as before. ``--write --accept-breaking`` records the break anyway, an override
after which ``--check`` passes without the bump: only for a break accepted on purpose (a
release with the bump never needs it).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workspace import PACKAGES, PIECES, ROOT, portions_of, version_of

API_DIR = ROOT / "api"
REFRESH = "uv run --group api python tools/api_snapshot.py --write"

_KIND = {
    "positional-only": "posonly",
    "positional or keyword": "pos",
    "keyword-only": "kwonly",
    "variadic positional": "*args",
    "variadic keyword": "**kwargs",
}
_POSITIONAL = ("posonly", "pos")

# --------------------------------------------------------------------------- reading (griffe)


def _params(func: Any, *, drop_first: bool) -> list[list[Any]]:
    """``[name, kind, required]`` per parameter, plus the default's source text when it has
    one (a changed default changes what every call that leaves the parameter out does)."""
    out = []
    for i, p in enumerate(func.parameters):
        if drop_first and i == 0 and p.name in ("self", "cls"):
            continue
        kind = _KIND[p.kind.value]
        variadic = kind in ("*args", "**kwargs")
        required = p.default is None and not variadic
        entry = [p.name, kind, required]
        if p.default is not None and not variadic:
            entry.append(str(p.default))
        out.append(entry)
    return out


def _target(obj: Any) -> Any | None:
    """The object an alias points to, or None when it lies outside what griffe loaded."""
    if not obj.is_alias:
        return obj
    try:
        return obj.final_target
    except Exception:  # noqa: BLE001 - unresolvable (external) alias
        return None


def _entry(obj: Any, *, method: bool = False) -> dict[str, Any]:
    if obj.is_module:
        return {"kind": "module"}
    if obj.is_class:
        return {"kind": "class", "params": _params(obj, drop_first=True)}
    if obj.is_function and "property" not in obj.labels:
        static = "staticmethod" in obj.labels
        return {"kind": "function", "params": _params(obj, drop_first=method and not static)}
    return {"kind": "attribute"}


def _public_names(module: Any) -> list[str]:
    if module.exports is not None:
        return [e if isinstance(e, str) else e.name for e in module.exports]
    return [n for n, m in module.members.items() if not n.startswith("_") and not m.is_alias]


def _walk_class(path: str, cls: Any, api: dict[str, dict[str, Any]]) -> None:
    for name, member in cls.all_members.items():
        if name.startswith("_"):
            continue
        target = _target(member)
        if target is None or not target.path.startswith("torchebm"):
            continue
        api[f"{path}.{name}"] = _entry(target, method=True)


def _walk_module(path: str, module: Any, api: dict[str, dict[str, Any]]) -> None:
    api[path] = {"kind": "module"}
    for name in _public_names(module):
        if name not in module.members:
            api[f"{path}.{name}"] = {"kind": "attribute"}  # e.g. set by a __getattr__
            continue
        target = _target(module.members[name])
        if target is None:
            api[f"{path}.{name}"] = {"kind": "attribute"}
            continue
        api[f"{path}.{name}"] = _entry(target)
        if target.is_class:
            _walk_class(f"{path}.{name}", target, api)
    for name, sub in module.modules.items():
        if not name.startswith("_") and not sub.is_alias:
            _walk_module(f"{path}.{name}", sub, api)


def current_api(piece: str) -> dict[str, dict[str, Any]]:
    """The public API of ``piece``, read from its source tree with griffe."""
    import griffe

    search = [str(p / "src") for p in sorted(PACKAGES.iterdir()) if (p / "src").is_dir()]
    loader = griffe.GriffeLoader(search_paths=search)
    api: dict[str, dict[str, Any]] = {}
    for portion in portions_of(piece):
        loader.load(f"torchebm.{portion}", try_relative_path=False)
    for portion in portions_of(piece):
        # griffe expands ``__all__ = [*sub.__all__, ...]`` from the top package down, and
        # stops at the ``torchebm`` namespace (it has no ``__all__``): expand each portion.
        loader.expand_exports(loader.modules_collection[f"torchebm.{portion}"])
    loader.resolve_aliases(implicit=False, external=False)
    for portion in portions_of(piece):
        _walk_module(f"torchebm.{portion}", loader.modules_collection[f"torchebm.{portion}"], api)
    return dict(sorted(api.items()))


# --------------------------------------------------------------------------- comparing


_RELEASE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)")


def _release(version: str) -> tuple[int, ...]:
    """The release numbers of ``version``, padded to three (``"0.2.0rc1"`` -> ``(0, 2, 0)``).

    Pre-, post- and dev-release suffixes never add digits (``"0.1post1"`` is 0.1, not 0.11):
    read by ``packaging`` where it is installed (the api group has it), else by a strict
    pattern that stops at the first character that is not a digit or a dot between digits.
    """
    try:
        from packaging.version import InvalidVersion, Version
    except ModuleNotFoundError:
        m = _RELEASE.match(version)
        if not m:
            raise ValueError(f"not a version: {version!r}") from None
        parts = [int(x) for x in m.group(1).split(".")]
    else:
        try:
            parts = list(Version(version).release)
        except InvalidVersion:
            raise ValueError(f"not a version: {version!r}") from None
    return tuple(parts + [0] * (3 - len(parts)))


def breaking_bump(old: str, new: str) -> bool:
    """True when ``old -> new`` is the bump a breaking change needs (0.x: minor; else major)."""
    o, n = _release(old), _release(new)
    if o[0] == 0:
        return n[:2] > o[:2]
    return n[0] > o[0]


def _same_default(old: str, new: str) -> bool:
    """Two defaults' source texts name the same value (``1e-3`` and ``0.001`` do)."""
    if old == new:
        return True
    try:
        return ast.literal_eval(old) == ast.literal_eval(new)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def _compare_params(path: str, old: list, new: list) -> tuple[list[str], list[str]]:
    breaks, adds = [], []
    new_by_name = {p[0]: (i, p) for i, p in enumerate(new)}
    old_names = {p[0] for p in old}
    old_pos = [p[0] for p in old if p[1] in _POSITIONAL]
    new_pos = [p[0] for p in new if p[1] in _POSITIONAL]
    for name, kind, required, *default in old:
        if kind in ("*args", "**kwargs"):
            if not any(p[1] == kind for p in new):
                breaks.append(f"{path}: {kind} parameter '{name}' removed")
            continue
        if name not in new_by_name:
            breaks.append(f"{path}: parameter '{name}' removed or renamed")
            continue
        _, (_, nkind, nreq, *ndefault) = new_by_name[name]
        if default and ndefault and not _same_default(default[0], ndefault[0]):
            breaks.append(
                f"{path}: parameter '{name}' default changed from {default[0]} to {ndefault[0]}"
            )
        if nkind != kind:
            breaks.append(f"{path}: parameter '{name}' changed from {kind} to {nkind}")
        elif kind in _POSITIONAL and old_pos.index(name) != new_pos.index(name):
            breaks.append(
                f"{path}: parameter '{name}' moved from position "
                f"{old_pos.index(name)} to {new_pos.index(name)}"
            )
        if nreq and not required:
            breaks.append(f"{path}: parameter '{name}' made required (its default was removed)")
    for name, kind, required, *_ in new:
        if name in old_names or kind in ("*args", "**kwargs"):
            continue
        if required:
            breaks.append(f"{path}: new required parameter '{name}'")
        else:
            adds.append(f"{path}: new optional parameter '{name}'")
    return breaks, adds


def compare(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]
) -> tuple[list[str], list[str]]:
    """(breaking changes, additions) going from the ``old`` API to the ``new`` one."""
    breaks: list[str] = []
    adds: list[str] = []
    for path, entry in old.items():
        if path not in new:
            parent = path.rsplit(".", 1)[0]
            if parent in old and parent not in new:
                continue  # reported once, for the parent
            breaks.append(f"{path}: removed")
            continue
        now = new[path]
        if now["kind"] != entry["kind"]:
            breaks.append(f"{path}: {entry['kind']} became {now['kind']}")
            continue
        if "params" in entry:
            b, a = _compare_params(path, entry["params"], now.get("params", []))
            breaks += b
            adds += a
    adds += [f"{path}: new {new[path]['kind']}" for path in new if path not in old]
    return breaks, adds


def check_piece(piece: str, snapshot: Mapping[str, Any], api: Mapping[str, Any], version: str):
    """(ok, report lines) for ``piece`` at ``version`` against its snapshot."""
    breaks, adds = compare(snapshot["api"], api)
    lines = []
    old_v = snapshot["version"]
    ok = True
    if breaks:
        if breaking_bump(old_v, version):
            lines.append(
                f"{piece}: {len(breaks)} breaking change(s), allowed by the version bump "
                f"{old_v} -> {version}; refresh the snapshot: {REFRESH}"
            )
        else:
            ok = False
            need = "a new minor (0.x)" if _release(old_v)[0] == 0 else "a new major"
            lines.append(
                f"{piece}: {len(breaks)} breaking change(s) without the version bump they "
                f"need ({old_v} -> {version}; needs {need}):"
            )
        lines += [f"  BREAKING {b}" for b in breaks]
    if adds:
        how = f"record them with: {REFRESH}" if ok else "recorded with the breaks' bump"
        lines.append(f"{piece}: {len(adds)} addition(s) (not breaking); {how}")
        lines += [f"  added {a}" for a in adds]
    if not breaks and not adds:
        lines.append(f"{piece}: public API unchanged ({len(api)} entries)")
    return ok, lines


# --------------------------------------------------------------------------- CLI


def snapshot_path(piece: str) -> Path:
    return API_DIR / f"{piece}.json"


def dump(data: Mapping[str, Any]) -> str:
    """JSON with one line per API entry, so that a snapshot's git diff reads as a changelog."""
    lines = ["{", f' "piece": {json.dumps(data["piece"])},']
    lines.append(f' "version": {json.dumps(data["version"])},')
    lines.append(' "api": {')
    items = sorted(data["api"].items())
    for i, (path, entry) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(f"  {json.dumps(path)}: {json.dumps(entry, sort_keys=True)}{comma}")
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


class UnreleasedBreak(Exception):
    """Writing the snapshot would record breaking changes the piece's version does not allow."""

    def __init__(self, piece: str, lines: list[str]):
        super().__init__(f"{piece}: breaking change(s) without the version bump they need")
        self.piece = piece
        self.lines = lines


def unreleased_breaks(piece: str, api: Mapping[str, Any], version: str) -> list[str]:
    """The report lines of `check_piece` when ``api`` at ``version`` breaks the existing
    snapshot without the bump DESIGN's release rules ask for; empty when it may be written
    (no snapshot yet, additions only, or breaks with the bump)."""
    path = snapshot_path(piece)
    if not path.is_file():
        return []
    ok, lines = check_piece(piece, json.loads(path.read_text()), api, version)
    return [] if ok else lines


def write(piece: str, *, accept_breaking: bool = False) -> Path:
    """Write ``api/<piece>.json`` from the current source tree.

    Raises `UnreleasedBreak` (nothing written) when the existing snapshot would lose a
    breaking change that the piece's version has not made the bump for, unless
    ``accept_breaking`` (a release that records the break on purpose).
    """
    version = version_of(piece)
    api = current_api(piece)
    if not accept_breaking:
        refused = unreleased_breaks(piece, api, version)
        if refused:
            raise UnreleasedBreak(piece, refused)
    data = {"piece": piece, "version": version, "api": api}
    API_DIR.mkdir(exist_ok=True)
    path = snapshot_path(piece)
    path.write_text(dump(data))
    return path


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies in it (the tests write elsewhere)."""
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def _write_all(pieces: list[str], *, accept_breaking: bool) -> int:
    """``--write``: every piece whose snapshot may be written is; 1 when one was refused."""
    refused = []
    for piece in pieces:
        try:
            path = write(piece, accept_breaking=accept_breaking)
        except UnreleasedBreak as err:
            print("\n".join(err.lines))
            refused.append(piece)
            continue
        n = len(json.loads(path.read_text())["api"])
        print(f"wrote {_shown(path)} ({n} entries, version {version_of(piece)})")
    if refused:
        print(
            f"not written: {', '.join(refused)}: bump the version first "
            "(uv version --package <piece> --bump minor; from 1.0: major), or pass "
            "--accept-breaking to accept the break without the bump (an override)"
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write api/<piece>.json")
    mode.add_argument("--check", action="store_true", help="compare with api/<piece>.json")
    p.add_argument(
        "--accept-breaking",
        action="store_true",
        help="with --write: record breaking changes even without the version bump they "
        "need (an override: --check then passes without the bump)",
    )
    p.add_argument("pieces", nargs="*", help="pieces (default: all)")
    args = p.parse_args(argv)
    pieces = args.pieces or PIECES
    unknown = sorted(set(pieces) - set(PIECES))
    if unknown:
        p.error(f"unknown piece(s) {unknown}; pieces are {PIECES}")
    if args.accept_breaking and not args.write:
        p.error("--accept-breaking goes with --write")
    if args.write:
        return _write_all(pieces, accept_breaking=args.accept_breaking)
    failed = []
    for piece in pieces:
        path = snapshot_path(piece)
        if not path.is_file():
            print(f"{piece}: no API snapshot {_shown(path)}; write it with: {REFRESH}")
            failed.append(piece)
            continue
        ok, lines = check_piece(
            piece, json.loads(path.read_text()), current_api(piece), version_of(piece)
        )
        print("\n".join(lines))
        if not ok:
            failed.append(piece)
    if failed:
        print(f"public-API gate failed for: {', '.join(failed)}")
        return 1
    print(f"public-API gate: {len(pieces)} pieces checked, no unreleased breaking change")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
