"""0.8.9 import path `torchebm.datasets.generators`; new code imports these names from `torchebm.datasets`."""

from torchebm.datasets import _base, _datasets
from torchebm.datasets._base import *  # noqa: F403
from torchebm.datasets._datasets import *  # noqa: F403

__all__ = [*_base.__all__, *_datasets.__all__]
