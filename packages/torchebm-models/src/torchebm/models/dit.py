"""Alias of ``torchebm.models`` at the torchebm 0.8.9 module path ``torchebm.models.dit``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.models``.
"""

from torchebm.models import (
    DiT,
    dit_b_2,
    dit_b_4,
    dit_b_8,
    dit_l_2,
    dit_l_4,
    dit_l_8,
    dit_s_2,
    dit_s_4,
    dit_s_8,
    dit_xl_2,
    dit_xl_4,
    dit_xl_8,
)

__all__ = [
    "DiT",
    "dit_b_2",
    "dit_b_4",
    "dit_b_8",
    "dit_l_2",
    "dit_l_4",
    "dit_l_8",
    "dit_s_2",
    "dit_s_4",
    "dit_s_8",
    "dit_xl_2",
    "dit_xl_4",
    "dit_xl_8",
]
