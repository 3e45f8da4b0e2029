"""``versions()``: every installed TorchEBM distribution, for bug reports."""

from __future__ import annotations

import contextlib
from importlib import metadata

__all__ = ["versions"]


def versions() -> dict[str, str]:
    """``{distribution: version}`` of every installed ``torchebm*`` piece, ``torch`` and ``triton``.

    Example:
        >>> "torchebm-core" in versions()
        True
    """
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        norm = (dist.metadata["Name"] or "").strip().lower().replace("_", "-")
        if norm == "torchebm" or norm.startswith("torchebm-"):
            found[norm] = dist.version
    for extra in ("torch", "triton"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[extra] = metadata.version(extra)
    return dict(sorted(found.items()))
