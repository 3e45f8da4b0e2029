"""0.8.9 import path `torchebm.models.components.heads`; new code imports these names from `torchebm.models.components`."""

from torchebm.models.components import (
    AdaLNZeroLinearHead,
    AdaLNZeroPatchHead,
    modulate,
    unpatchify2d,
)

__all__ = ["AdaLNZeroLinearHead", "AdaLNZeroPatchHead", "modulate", "unpatchify2d"]
