"""0.8.9 import path `torchebm.losses.energy_matching`; new code imports these names from `torchebm.losses`."""

# the `X as X` imports: names 0.8.9's module imported, for code that imported them from here
from torchebm.core import BaseCoupling as BaseCoupling
from torchebm.core import BaseInterpolant as BaseInterpolant
from torchebm.core import BaseLoss as BaseLoss
from torchebm.core import BaseModel as BaseModel
from torchebm.core import BaseScheduler as BaseScheduler
from torchebm.core import ConstantScheduler as ConstantScheduler
from torchebm.core import TemperatureScheduler as TemperatureScheduler
from torchebm.losses import EnergyMatchingLoss
from torchebm.losses import compute_flow_weight as compute_flow_weight
from torchebm.losses import mean_flat as mean_flat
from torchebm.losses import trimmed_mean as trimmed_mean

__all__ = ["EnergyMatchingLoss"]
