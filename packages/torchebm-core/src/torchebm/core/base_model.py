"""0.8.9 import path `torchebm.core.base_model`; new code imports these names from `torchebm.core`."""

from torchebm.core import _base_model
from torchebm.core._base_model import *  # noqa: F403

__all__ = [*_base_model.__all__]
