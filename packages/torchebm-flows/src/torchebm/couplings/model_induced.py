"""0.8.9 import path `torchebm.couplings.model_induced`; new code imports these names from `torchebm.couplings`."""

# the `X as X` imports: names 0.8.9's module imported, for code that imported them from here
from torchebm.core import BaseModelCoupling as BaseModelCoupling
from torchebm.couplings import ReflowCoupling

__all__ = ["ReflowCoupling"]
