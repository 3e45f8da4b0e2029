"""Shared helpers of the example scripts (not an example itself)."""

import os

#: ``TORCHEBM_SMOKE=1`` (set by ``nox -s examples``) shortens every loop.
SMOKE = os.environ.get("TORCHEBM_SMOKE", "") not in ("", "0")


def steps(full: int, smoke: int) -> int:
    """``smoke`` under ``TORCHEBM_SMOKE=1``, else ``full``."""
    return smoke if SMOKE else full
