"""0.8.9 import path `torchebm.interpolants.linear`; new code imports these names from `torchebm.interpolants`."""

# the `X as X` imports: names 0.8.9's module imported, for code that imported them from here
from torchebm.core import BaseInterpolant as BaseInterpolant
from torchebm.interpolants import LinearInterpolant

__all__ = ["LinearInterpolant"]
