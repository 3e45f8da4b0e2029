"""0.8.9 import path `torchebm.core.base_sampler`; new code imports these names from `torchebm.core`."""

from torchebm.core import BaseSampler

__all__ = ["BaseSampler"]
