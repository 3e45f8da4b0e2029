"""0.8.9 import path `torchebm.core.base_interpolant`; new code imports these names from `torchebm.core`."""

from torchebm.core import BaseInterpolant, expand_t_like_x

__all__ = ["BaseInterpolant", "expand_t_like_x"]
