"""Load a script of `examples/` as a module (the worked examples of docs/contributing.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["load_example"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(filename: str) -> ModuleType:
    """Import ``examples/<filename>`` once (its ``__main__`` block does not run)."""
    name = f"torchebm_example_{Path(filename).stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / filename)
    assert spec is not None and spec.loader is not None, filename
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
