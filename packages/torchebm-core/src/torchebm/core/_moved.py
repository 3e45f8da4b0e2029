r"""Names `torchebm.core` used to define and that now live in the piece that uses them.

`torchebm-core` imports no sibling distribution. A class that only one piece uses moved
into that piece (DESIGN section 1); its old import path keeps working through the module
`__getattr__` of `torchebm.core`, which imports the new home on first access, like the
optional accelerator probe (`importlib.util.find_spec`), and raises
`MissingDependencyError` naming the `pip install` when that piece is absent.

Example:
    >>> from torchebm.core import BaseRungeKuttaIntegrator  # doctest: +SKIP
    >>> BaseRungeKuttaIntegrator.__module__  # doctest: +SKIP
    'torchebm.integrators._base_runge_kutta'
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from torchebm.core.errors import MissingDependencyError

__all__ = ["MOVED", "resolve_moved"]

#: old ``torchebm.core`` name -> (new public module, distribution that ships it)
MOVED: dict[str, tuple[str, str]] = {
    "BaseRungeKuttaIntegrator": ("torchebm.integrators", "torchebm-flows"),
    "BaseSDERungeKuttaIntegrator": ("torchebm.integrators", "torchebm-flows"),
    "BaseSymplecticIntegrator": ("torchebm.integrators", "torchebm-flows"),
    "BaseContrastiveDivergence": ("torchebm.losses", "torchebm-losses"),
    "BaseScoreMatching": ("torchebm.losses", "torchebm-losses"),
    "BaseTrainer": ("torchebm.losses", "torchebm-losses"),
    "TrainerCallback": ("torchebm.losses", "torchebm-losses"),
    "ContrastiveDivergenceTrainer": ("torchebm.losses", "torchebm-losses"),
}


def resolve_moved(name: str) -> Any:
    """The object ``torchebm.core.<name>`` stands for, imported from its new home.

    Raises:
        AttributeError: ``name`` is not a moved name.
        MissingDependencyError: the distribution that ships it is not installed."""
    if name not in MOVED:
        raise AttributeError(f"module 'torchebm.core' has no attribute {name!r}")
    module, dist = MOVED[name]
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f"torchebm.core.{name} (now {module}.{name})", f"pip install {dist}"
        )
    return getattr(importlib.import_module(module), name)
