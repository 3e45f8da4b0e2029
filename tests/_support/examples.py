"""Load a file of the repository as a module: a script of `examples/` (the worked examples of
docs/contributing.md) or a CI tool of `tools/`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["load_example", "load_tool"]

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> ModuleType:
    """Import ``path`` as module ``name`` once (kept in ``sys.modules``: dataclasses need it)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_example(filename: str) -> ModuleType:
    """Import ``examples/<filename>`` once (its ``__main__`` block does not run)."""
    return _load(f"torchebm_example_{Path(filename).stem}", ROOT / "examples" / filename)


def load_tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` once, as module ``name``."""
    return _load(name, ROOT / "tools" / f"{name}.py")
