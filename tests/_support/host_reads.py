"""Count tensor -> Python conversions (each one a host sync on an accelerator)."""

from __future__ import annotations

import torch

__all__ = ["count_host_reads"]

_CONVERSIONS = ("__bool__", "item", "tolist", "__float__", "__int__", "__index__")


def count_host_reads(monkeypatch) -> dict[str, int]:
    """Patch every tensor -> Python conversion to count its calls in ``calls["n"]``."""
    calls = {"n": 0}
    for attr in _CONVERSIONS:
        original = getattr(torch.Tensor, attr)

        def counting(self, *a, _original=original, **k):
            calls["n"] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, attr, counting)
    return calls
