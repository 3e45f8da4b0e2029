"""0.8.9 import path `torchebm.couplings.ot`; new code imports these names from `torchebm.couplings`."""

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
