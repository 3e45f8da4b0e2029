"""0.8.9 import path `torchebm.models.conditional_transformer_2d`; new code imports these names from `torchebm.models`."""

from torchebm.models import ConditionalTransformer2D, DiT

__all__ = ["ConditionalTransformer2D", "DiT"]
