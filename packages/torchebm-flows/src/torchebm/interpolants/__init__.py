r"""``torchebm.interpolants``: probability paths between noise and data (part of ``torchebm-flows``).

An interpolant defines $x_t = \alpha(t)\,x_1 + \sigma(t)\,x_0$ with **t = 0 noise
(x0) and t = 1 data (x1)**, the conditional velocity, the probability-flow drift and the
conversions between velocity, score and noise predictions.

Example:
    >>> import torch
    >>> from torchebm.interpolants import get_interpolant
    >>> xt, ut = get_interpolant("linear").interpolate(torch.randn(8, 2), torch.randn(8, 2),
    ...                                                torch.rand(8))
"""

from importlib.metadata import version as _version

from torchebm.interpolants._interpolants import (
    CosineInterpolant,
    LinearInterpolant,
    VarianceExplodingInterpolant,
    VariancePreservingInterpolant,
)
from torchebm.interpolants._registry import INTERPOLANT_NAMES, get_interpolant, resolve_interpolant

__version__ = _version("torchebm-flows")

__all__ = [
    "LinearInterpolant",
    "CosineInterpolant",
    "VariancePreservingInterpolant",
    "VarianceExplodingInterpolant",
    "get_interpolant",
    "resolve_interpolant",
    "INTERPOLANT_NAMES",
]
