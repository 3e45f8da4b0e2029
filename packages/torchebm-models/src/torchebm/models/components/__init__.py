r"""``torchebm.models.components``: reusable building blocks of the TorchEBM backbones.

Patch tokenisation, fixed and learned conditioning embeddings, attention and AdaLN-Zero
transformer blocks. Every name here is also re-exported from `torchebm.models`.
"""

from torchebm.models.components._adaln_mlp import AdaLNZeroLinearHead, AdaLNZeroMLPBlock
from torchebm.models.components._embeddings import (
    LabelEmbedder,
    MLPTimestepEmbedder,
    build_2d_sincos_pos_embed,
    sinusoidal_embedding,
)
from torchebm.models.components._patch import ConvPatchEmbed2d, patchify2d, unpatchify2d
from torchebm.models.components._transformer import (
    AdaLNZeroBlock,
    AdaLNZeroPatchHead,
    FeedForward,
    MultiheadSelfAttention,
    modulate,
)

__all__ = [
    "MLPTimestepEmbedder",
    "LabelEmbedder",
    "sinusoidal_embedding",
    "build_2d_sincos_pos_embed",
    "ConvPatchEmbed2d",
    "patchify2d",
    "unpatchify2d",
    "FeedForward",
    "MultiheadSelfAttention",
    "AdaLNZeroBlock",
    "AdaLNZeroPatchHead",
    "AdaLNZeroMLPBlock",
    "AdaLNZeroLinearHead",
    "modulate",
]
