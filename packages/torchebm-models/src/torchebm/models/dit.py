"""0.8.9 import path `torchebm.models.dit`; new code imports these names from `torchebm.models`."""

from torchebm.models import _dit
from torchebm.models._dit import *  # noqa: F403

__all__ = [*_dit.__all__]
