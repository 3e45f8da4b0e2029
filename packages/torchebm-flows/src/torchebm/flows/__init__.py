r"""``torchebm.flows``: Equilibrium Matching and Energy Matching (part of ``torchebm-flows``).

The public home of the two losses is ``torchebm.losses``, which re-exports them from here.

Example:
    >>> import torch, torch.nn as nn
    >>> from torchebm.flows import EquilibriumMatchingLoss
    >>> class Field(nn.Linear):  # a field f(x, t) that ignores t
    ...     def forward(self, x, t):
    ...         return super().forward(x)
    >>> loss = EquilibriumMatchingLoss(Field(2, 2), coupling="ot")(torch.randn(32, 2))
"""

from importlib.metadata import version as _version

from torchebm.flows._energy_matching import EnergyMatchingLoss
from torchebm.flows._equilibrium_matching import EquilibriumMatchingLoss
from torchebm.flows._likelihood import (
    ODELikelihood,
    bits_per_dim,
    probability_flow_log_likelihood,
)
from torchebm.flows._time_sampling import TimeSampler
from torchebm.flows._utils import (
    compute_eqm_ct,
    compute_flow_weight,
    dispersive_loss,
    mean_flat,
    trimmed_mean,
)
from torchebm.interpolants import get_interpolant

__version__ = _version("torchebm-flows")

__all__ = [
    "EquilibriumMatchingLoss",
    "EnergyMatchingLoss",
    "TimeSampler",
    "mean_flat",
    "trimmed_mean",
    "compute_flow_weight",
    "compute_eqm_ct",
    "dispersive_loss",
    "get_interpolant",
    "probability_flow_log_likelihood",
    "ODELikelihood",
    "bits_per_dim",
]
