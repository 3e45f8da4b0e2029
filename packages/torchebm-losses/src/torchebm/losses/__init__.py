r"""``torchebm.losses``: every training objective of TorchEBM.

* Contrastive divergence: [`ContrastiveDivergence`][torchebm.losses.ContrastiveDivergence] (CD-k, or persistent with a
  replay buffer), [`PersistentContrastiveDivergence`][torchebm.losses.PersistentContrastiveDivergence], [`ParallelTemperingCD`][torchebm.losses.ParallelTemperingCD].
* Score matching: [`ScoreMatching`][torchebm.losses.ScoreMatching] (exact / Hutchinson / finite-difference trace),
  [`SlicedScoreMatching`][torchebm.losses.SlicedScoreMatching], [`DenoisingScoreMatching`][torchebm.losses.DenoisingScoreMatching].
* Extension bases and the loop: ``BaseContrastiveDivergence``, ``BaseScoreMatching``,
  ``BaseTrainer`` (with ``TrainerCallback``) and the preset ``ContrastiveDivergenceTrainer``.
* Flow-based energy objectives, implemented in ``torchebm.flows`` and re-exported here:
  ``EquilibriumMatchingLoss``, ``EnergyMatchingLoss`` and their utilities.

Every loss is an ``nn.Module`` called as ``loss_fn(x, model_kwargs=..., generator=...)``.

Example:
    >>> import torch
    >>> from torchebm.losses import DenoisingScoreMatching
    >>> from torchebm.models import MLPEnergy  # torchebm-models
    >>> loss = DenoisingScoreMatching(MLPEnergy(2), noise_scale=0.1)(torch.randn(64, 2))
"""

from importlib.metadata import version as _version

from torchebm.flows import EnergyMatchingLoss, EquilibriumMatchingLoss
from torchebm.losses import loss_utils
from torchebm.losses._base_contrastive_divergence import BaseContrastiveDivergence
from torchebm.losses._base_score_matching import BaseScoreMatching
from torchebm.losses._base_trainer import BaseTrainer, TrainerCallback
from torchebm.losses._contrastive_divergence import (
    ContrastiveDivergence,
    ParallelTemperingCD,
    PersistentContrastiveDivergence,
)
from torchebm.losses._flow_matching import FlowMatchingLoss
from torchebm.losses._score_matching import (
    DenoisingScoreMatching,
    ScoreMatching,
    SlicedScoreMatching,
)
from torchebm.losses._trainers import ContrastiveDivergenceTrainer
from torchebm.losses.loss_utils import *  # noqa: F403

__version__ = _version("torchebm-losses")

__all__ = [
    "BaseTrainer",
    "TrainerCallback",
    "BaseContrastiveDivergence",
    "BaseScoreMatching",
    "ContrastiveDivergenceTrainer",
    "ContrastiveDivergence",
    "PersistentContrastiveDivergence",
    "ParallelTemperingCD",
    "ScoreMatching",
    "DenoisingScoreMatching",
    "SlicedScoreMatching",
    "EquilibriumMatchingLoss",
    "EnergyMatchingLoss",
    "FlowMatchingLoss",
    *loss_utils.__all__,
]
