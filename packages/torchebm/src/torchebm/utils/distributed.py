"""0.8.9 import path `torchebm.utils.distributed`; new code imports these names from `torchebm.core.distributed`."""

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
