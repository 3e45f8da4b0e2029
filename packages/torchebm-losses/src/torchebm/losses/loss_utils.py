r"""Loss utilities (back-compatible module path ``torchebm.losses.loss_utils``).

The implementations live in ``torchebm.flows`` (and ``get_interpolant`` in
``torchebm.interpolants``); this module re-exports them so that older imports such as
``from torchebm.losses.loss_utils import mean_flat, get_interpolant`` keep working.

Example:
    >>> import torch
    >>> from torchebm.losses.loss_utils import mean_flat
    >>> mean_flat(torch.ones(4, 3, 2)).shape
    torch.Size([4])
"""

from torchebm.flows import (
    compute_eqm_ct,
    compute_flow_weight,
    dispersive_loss,
    mean_flat,
    trimmed_mean,
)
from torchebm.interpolants import get_interpolant

__all__ = [
    "mean_flat",
    "get_interpolant",
    "trimmed_mean",
    "compute_flow_weight",
    "compute_eqm_ct",
    "dispersive_loss",
]
