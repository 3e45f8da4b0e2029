"""0.8.9 import path `torchebm.couplings.model_induced`; new code imports these names from `torchebm.couplings`."""

from torchebm.couplings import ReflowCoupling

__all__ = ["ReflowCoupling"]
