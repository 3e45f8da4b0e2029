"""0.8.9 import path `torchebm.core.base_coupling`; new code imports these names from `torchebm.core`."""

from torchebm.core import BaseCostCoupling, BaseCoupling, BaseModelCoupling, CouplingResult

__all__ = ["BaseCostCoupling", "BaseCoupling", "BaseModelCoupling", "CouplingResult"]
