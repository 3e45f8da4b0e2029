"""Alias of ``torchebm.couplings`` at the torchebm 0.8.9 module path ``torchebm.couplings.independent``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.couplings``.
"""

from torchebm.couplings import (
    IndependentCoupling,
)

__all__ = [
    "IndependentCoupling",
]
