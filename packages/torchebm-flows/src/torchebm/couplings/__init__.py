r"""``torchebm.couplings``: pairing noise with data for flow/EqM training (part of ``torchebm-flows``).

All solvers are pure torch and run on the tensors' device; results carry no autograd graph.

Example:
    >>> import torch
    >>> from torchebm.couplings import get_coupling
    >>> x0, x1 = get_coupling("ot")(torch.randn(32, 2), torch.randn(32, 2))
"""

from importlib.metadata import version as _version

from torchebm.core import CouplingResult
from torchebm.couplings._couplings import (
    ExactOTCoupling,
    GreedyCoupling,
    IndependentCoupling,
    ReflowCoupling,
    SinkhornCoupling,
    UnbalancedSinkhornCoupling,
    auction_assignment,
)
from torchebm.couplings._registry import COUPLING_NAMES, get_coupling, resolve_coupling

__version__ = _version("torchebm-flows")

__all__ = [
    "get_coupling",
    "resolve_coupling",
    "COUPLING_NAMES",
    "CouplingResult",
    "IndependentCoupling",
    "ExactOTCoupling",
    "SinkhornCoupling",
    "GreedyCoupling",
    "UnbalancedSinkhornCoupling",
    "ReflowCoupling",
    "auction_assignment",
]
