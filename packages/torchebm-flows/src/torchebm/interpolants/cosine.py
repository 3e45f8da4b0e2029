"""0.8.9 import path `torchebm.interpolants.cosine`; new code imports these names from `torchebm.interpolants`."""

from torchebm.interpolants import CosineInterpolant

__all__ = ["CosineInterpolant"]
