"""0.8.9 import path `torchebm.interpolants.variance_preserving`; new code imports these names from `torchebm.interpolants`."""

# the `X as X` imports: names 0.8.9's module imported, for code that imported them from here
from torchebm.core import BaseInterpolant as BaseInterpolant
from torchebm.core import expand_t_like_x as expand_t_like_x
from torchebm.interpolants import VariancePreservingInterpolant

__all__ = ["VariancePreservingInterpolant"]
