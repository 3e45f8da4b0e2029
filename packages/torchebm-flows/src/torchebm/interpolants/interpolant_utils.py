"""0.8.9 import path `torchebm.interpolants.interpolant_utils`; new code imports these names from `torchebm.interpolants`."""

from torchebm.core import BaseInterpolant
from torchebm.interpolants import get_interpolant, resolve_interpolant

__all__ = ["get_interpolant", "resolve_interpolant", "BaseInterpolant"]
