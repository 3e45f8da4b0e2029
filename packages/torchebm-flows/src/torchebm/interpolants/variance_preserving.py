"""0.8.9 import path `torchebm.interpolants.variance_preserving`; new code imports these names from `torchebm.interpolants`."""

from torchebm.interpolants import VariancePreservingInterpolant

__all__ = ["VariancePreservingInterpolant"]
