"""Shared check of the tests of 0.8.9 hooks (samplers and losses): a subclass defining a hook
that this version never calls is told so when it is defined."""

from __future__ import annotations

import pytest


def assert_warns_when_defined(base: type, name: str) -> None:
    """Defining ``name`` on a subclass of ``base`` gives the ``UserWarning`` that the 0.8.9 hook
    has no effect, attributed to the line that defines the subclass (here)."""
    with pytest.warns(UserWarning, match=rf"\.{name} overrides a torchebm 0\.8\.9 hook") as rec:
        type("Mine", (base,), {name: lambda self, *a, **k: None})
    assert all(w.filename == __file__ for w in rec)
