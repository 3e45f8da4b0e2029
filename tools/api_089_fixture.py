r"""Write the public-API fixture of a published ``torchebm`` wheel (0.8.9).

Reads an unpacked wheel (the folder that contains ``torchebm/``), imports every public
module of it in a subprocess-free way (the wheel folder goes first on ``sys.path``, so
its regular ``torchebm`` package shadows this workspace's namespace portions), and
writes a small JSON file:

* ``modules``: every public module path below ``torchebm`` (no component starts with ``_``);
* ``names``: for each module, the names in its ``__all__``;
* ``defined``: for each module, the public classes and functions it defines itself
  (what ``from torchebm.<module> import X`` reached in 0.8.9, ``__all__`` or not);
* ``params``: for each public class (named in some module's ``__all__``; a class exported
  by several modules is listed once, under the first in path order), the names of its
  constructor parameters (``self``, ``*args`` and ``**kwargs`` left out);
* ``functions``: for each public function, its parameter names;
* ``forward``: for each public class with a ``forward``, its parameter names.

The test ``tests/integration/test_api_089.py`` reads only this fixture; the wheel is
never needed at test time. Run it in an environment that has torch::

    python tools/api_089_fixture.py /path/to/unpacked/torchebm-0.8.9 \
        -o tests/integration/fixtures/api_089.json
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from pathlib import Path

_SKIP_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _public_modules(root: Path) -> list[str]:
    mods = []
    for path in sorted((root / "torchebm").rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) < 2 or any(p.startswith("_") for p in parts):
            continue
        mods.append(".".join(parts))
    return mods


def _param_names(fn) -> list[str]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in sig.parameters.values()
        if p.kind not in _SKIP_KINDS and p.name not in ("self", "cls")
    ]


def collect(root: Path) -> dict:
    """Import every public module of the wheel under ``root`` and describe its API."""
    sys.path.insert(0, str(root))
    for name in [m for m in sys.modules if m == "torchebm" or m.startswith("torchebm.")]:
        del sys.modules[name]
    modules = _public_modules(root)
    names: dict[str, list[str]] = {}
    defined: dict[str, list[str]] = {}
    params: dict[str, list[str]] = {}
    functions: dict[str, list[str]] = {}
    forwards: dict[str, list[str]] = {}
    seen: set[int] = set()
    for mod_name in modules:
        mod = importlib.import_module(mod_name)
        exported = [n for n in getattr(mod, "__all__", []) if not n.startswith("_")]
        names[mod_name] = sorted(exported)
        defined[mod_name] = sorted(
            n
            for n, obj in vars(mod).items()
            if not n.startswith("_")
            and (inspect.isclass(obj) or inspect.isfunction(obj))
            and getattr(obj, "__module__", None) == mod_name
        )
        for n in exported:
            obj = getattr(mod, n)
            key = f"{mod_name}.{n}"
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if inspect.isclass(obj):
                params[key] = _param_names(obj.__init__)
                if callable(getattr(obj, "forward", None)):
                    forwards[key] = _param_names(obj.forward)
            elif inspect.isfunction(obj):
                functions[key] = _param_names(obj)
    return {
        "source": f"torchebm {getattr(importlib.import_module('torchebm'), '__version__', '?')}",
        "modules": modules,
        "names": names,
        "defined": defined,
        "params": params,
        "functions": functions,
        "forward": forwards,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel_root", type=Path, help="folder that contains torchebm/")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    data = collect(args.wheel_root.resolve())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    n_names = sum(len(v) for v in data["names"].values())
    n_params = sum(len(v) for v in data["params"].values())
    print(f"{len(data['modules'])} modules, {n_names} names, {n_params} constructor params")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
