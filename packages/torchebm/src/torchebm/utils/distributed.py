"""Alias of ``torchebm.core.distributed`` at the torchebm 0.8.9 module path ``torchebm.utils.distributed``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.core.distributed``.
"""

from torchebm.core.distributed import (
    all_gather_cat,
    broadcast_object,
    broadcast_tensor,
    get_rank,
    get_world_size,
    is_distributed,
    unsharded,
)

__all__ = [
    "all_gather_cat",
    "broadcast_object",
    "broadcast_tensor",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "unsharded",
]
