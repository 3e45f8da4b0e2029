"""0.8.9 import path `torchebm.models.backbone` (its base class `_ConditionalBackbone` was private); the embedders it imported are importable from it as in 0.8.9; new code imports them from `torchebm.models`."""

from torchebm.models.components import LabelEmbedder, MLPTimestepEmbedder

__all__ = ["LabelEmbedder", "MLPTimestepEmbedder"]
