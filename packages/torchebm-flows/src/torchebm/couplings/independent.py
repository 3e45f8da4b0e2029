"""0.8.9 import path `torchebm.couplings.independent`; new code imports these names from `torchebm.couplings`."""

from torchebm.couplings import IndependentCoupling

__all__ = ["IndependentCoupling"]
