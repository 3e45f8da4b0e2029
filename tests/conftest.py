"""Fixtures for every test folder."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_warn_once_registry():
    """Start each test as a fresh process would, with no once-per-process warning spent.

    Deprecations and similar notices warn once per process (`torchebm.core`'s registry);
    with tests spread over xdist workers, which test first triggers one depends on the
    order, so every test begins with the registry empty. (The tools tests run without
    torch: there is nothing to reset.)
    """
    try:
        from torchebm.core import _module
    except ImportError:
        yield
        return
    _module._WARNED.clear()
    yield
