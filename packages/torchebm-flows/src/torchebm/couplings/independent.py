"""0.8.9 import path `torchebm.couplings.independent`; new code imports these names from `torchebm.couplings`."""

# the `X as X` imports: names 0.8.9's module imported, for code that imported them from here
from torchebm.core import BaseCoupling as BaseCoupling
from torchebm.core import CouplingResult as CouplingResult
from torchebm.couplings import IndependentCoupling

__all__ = ["IndependentCoupling"]
