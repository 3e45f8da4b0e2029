"""0.8.9 import path `torchebm.losses.equilibrium_matching`; new code imports these names from `torchebm.losses`."""

# the `X as X` imports: names 0.8.9's module imported, for code that imported them from here
from torchebm.core import BaseCoupling as BaseCoupling
from torchebm.core import BaseInterpolant as BaseInterpolant
from torchebm.core import BaseScheduler as BaseScheduler
from torchebm.core import expand_t_like_x as expand_t_like_x
from torchebm.losses import EquilibriumMatchingLoss
from torchebm.losses import compute_eqm_ct as compute_eqm_ct
from torchebm.losses import dispersive_loss as dispersive_loss
from torchebm.losses import mean_flat as mean_flat

__all__ = ["EquilibriumMatchingLoss"]
