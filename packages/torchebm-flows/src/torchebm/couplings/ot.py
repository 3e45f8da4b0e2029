"""0.8.9 import path `torchebm.couplings.ot`; new code imports these names from `torchebm.couplings`."""

# the `X as X` imports: names 0.8.9's module imported, for code that imported them from here
from torchebm.core import BaseCostCoupling as BaseCostCoupling
from torchebm.core import CouplingResult as CouplingResult
from torchebm.couplings import (
    ExactOTCoupling,
    GreedyCoupling,
    SinkhornCoupling,
    UnbalancedSinkhornCoupling,
)

__all__ = [
    "ExactOTCoupling",
    "GreedyCoupling",
    "SinkhornCoupling",
    "UnbalancedSinkhornCoupling",
]
