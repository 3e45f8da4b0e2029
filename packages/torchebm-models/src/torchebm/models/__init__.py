r"""``torchebm.models``: neural backbones and wrappers for energies and vector fields.

* :class:`ConditionalTransformer2D`: DiT/SiT-style patch transformer for image-shaped
  fields, conditioned on times (raw ``(B,)`` times are embedded), vectors and labels.
* Wrappers: :class:`LabelClassifierFreeGuidance`, :class:`EqMEnergy` (EqM field as an
  energy for gradient samplers), :class:`InteractionModel` (batch repulsion).
* Small MLP backbones for 2-D work: :class:`MLPEnergy` (``(B, d) -> (B,)``) and
  :class:`MLPVelocity` (``f(x, t)`` shaped like ``x``).
* Every building block of :mod:`torchebm.models.components`, re-exported.

Install alone with ``pip install torchebm-models`` (needs only ``torchebm-core``).
"""

from importlib.metadata import version as _version

from torchebm.models import components
from torchebm.models._conditional_transformer_2d import ConditionalTransformer2D
from torchebm.models._mlp import MLPEnergy, MLPVelocity, fourier_time_features
from torchebm.models._wrappers import EqMEnergy, InteractionModel, LabelClassifierFreeGuidance
from torchebm.models.components import (
    AdaLNZeroBlock,
    AdaLNZeroPatchHead,
    ConvPatchEmbed2d,
    FeedForward,
    LabelEmbedder,
    MLPTimestepEmbedder,
    MultiheadSelfAttention,
    build_2d_sincos_pos_embed,
    modulate,
    patchify2d,
    sinusoidal_embedding,
    unpatchify2d,
)

__version__ = _version("torchebm-models")

__all__ = [
    "components",
    "ConditionalTransformer2D",
    "LabelClassifierFreeGuidance",
    "InteractionModel",
    "EqMEnergy",
    "MLPEnergy",
    "MLPVelocity",
    "fourier_time_features",
    # re-exports of torchebm.models.components
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
    "modulate",
]
