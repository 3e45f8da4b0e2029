"""0.8.9 import path `torchebm.couplings.coupling_utils`; new code imports these names from `torchebm.couplings`."""

from torchebm.core import BaseCoupling
from torchebm.couplings import get_coupling, resolve_coupling

__all__ = ["get_coupling", "resolve_coupling", "BaseCoupling"]
