"""0.8.9 import path `torchebm.interpolants.linear`; new code imports these names from `torchebm.interpolants`."""

from torchebm.interpolants import LinearInterpolant

__all__ = ["LinearInterpolant"]
