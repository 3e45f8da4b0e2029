"""0.8.9 import path `torchebm.models.components.embeddings`; new code imports these names from `torchebm.models.components`."""

from torchebm.models.components import LabelEmbedder, MLPTimestepEmbedder

__all__ = ["LabelEmbedder", "MLPTimestepEmbedder"]
