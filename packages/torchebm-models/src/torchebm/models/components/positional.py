"""0.8.9 import path `torchebm.models.components.positional`; new code imports these names from `torchebm.models.components`."""

from torchebm.models.components import build_2d_sincos_pos_embed

__all__ = ["build_2d_sincos_pos_embed"]
