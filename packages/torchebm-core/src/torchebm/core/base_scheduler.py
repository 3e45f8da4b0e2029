"""0.8.9 import path `torchebm.core.base_scheduler`; new code imports these names from `torchebm.core`."""

from torchebm.core import _schedulers
from torchebm.core._schedulers import *  # noqa: F403

__all__ = [*_schedulers.__all__]
