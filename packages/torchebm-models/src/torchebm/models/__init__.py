r"""``torchebm.models``: neural backbones and wrappers for energies and vector fields.

* `DiT` (``forward(x, t, y, *, cond)``) with the paper presets ``dit_s_2`` ... ``dit_xl_8``,
  and `TimeConditionedMLP` for low-dimensional flows (the torchebm 0.8.9 backbones).
* [`ConditionalTransformer2D`][torchebm.models.ConditionalTransformer2D]: DiT/SiT-style patch transformer for image-shaped
  fields, conditioned on times (raw ``(B,)`` times are embedded), vectors and labels.
* Wrappers: `ClassifierFreeGuidance` (any conditioning), [`LabelClassifierFreeGuidance`][torchebm.models.LabelClassifierFreeGuidance], [`EqMEnergy`][torchebm.models.EqMEnergy] (EqM field as an
  energy for gradient samplers), [`InteractionModel`][torchebm.models.InteractionModel] (batch repulsion).
* Small MLP backbones for 2-D work: [`MLPEnergy`][torchebm.models.MLPEnergy] (``(B, d) -> (B,)``) and
  [`MLPVelocity`][torchebm.models.MLPVelocity] (``f(x, t)`` shaped like ``x``).
* Every building block of `torchebm.models.components`, re-exported.

Install alone with ``pip install torchebm-models`` (needs only ``torchebm-core``).
"""

from importlib.metadata import version as _version

from torchebm.models import _dit, components
from torchebm.models._conditional_transformer_2d import ConditionalTransformer2D
from torchebm.models._dit import *  # noqa: F403
from torchebm.models._guidance import ClassifierFreeGuidance
from torchebm.models._mlp import MLPEnergy, MLPVelocity, fourier_time_features
from torchebm.models._time_mlp import TimeConditionedMLP
from torchebm.models._wrappers import EqMEnergy, InteractionModel, LabelClassifierFreeGuidance
from torchebm.models.components import *  # noqa: F403

__version__ = _version("torchebm-models")

__all__ = [
    "components",
    "ConditionalTransformer2D",
    *_dit.__all__,
    "TimeConditionedMLP",
    "ClassifierFreeGuidance",
    "LabelClassifierFreeGuidance",
    "InteractionModel",
    "EqMEnergy",
    "MLPEnergy",
    "MLPVelocity",
    "fourier_time_features",
    # re-exports of torchebm.models.components
    *components.__all__,
]
