"""0.8.9 import path `torchebm.core.schedulable`; new code imports these names from `torchebm.core`."""

from torchebm.core import Schedulable

__all__ = ["Schedulable"]
