"""0.8.9 import path `torchebm.losses.flow_matching`; new code imports these names from `torchebm.losses`."""

# the `X as X` imports: names 0.8.9's module imported, for code that imported them from here
from torchebm.core import BaseCoupling as BaseCoupling
from torchebm.core import BaseInterpolant as BaseInterpolant
from torchebm.core import BaseScheduler as BaseScheduler
from torchebm.losses import FlowMatchingLoss
from torchebm.losses import mean_flat as mean_flat

__all__ = ["FlowMatchingLoss"]
