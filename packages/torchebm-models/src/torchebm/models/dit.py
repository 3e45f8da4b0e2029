"""0.8.9 import path `torchebm.models.dit`; new code imports these names from `torchebm.models`."""

from torchebm.models import _dit
from torchebm.models._dit import *  # noqa: F403
from torchebm.models.components import (
    AdaLNZeroBlock,
    AdaLNZeroPatchHead,
    ConvPatchEmbed2d,
    build_2d_sincos_pos_embed,
)

__all__ = [
    *_dit.__all__,
    "AdaLNZeroBlock",
    "AdaLNZeroPatchHead",
    "ConvPatchEmbed2d",
    "build_2d_sincos_pos_embed",
]
