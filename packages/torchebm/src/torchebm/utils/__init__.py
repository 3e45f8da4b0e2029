r"""``torchebm.utils``: training utilities (EMA, checkpoints, profiling, distributed helpers).

The torchebm 0.8.x home of these names, kept as a supported path in the ``torchebm``
meta distribution (the one 0.8.x users install by that name). `EMA` and `profile_context`,
which no piece uses, are implemented here; the functional helpers are re-exported from
``torchebm.core`` and ``torchebm.core.distributed``.

Example:
    >>> import torch
    >>> from torchebm.utils import EMA, requires_grad
    >>> model = torch.nn.Linear(2, 1)
    >>> ema = EMA(model, decay=0.999, decay_schedule="warmup")
"""

from importlib.metadata import version as _version

from torchebm.core import load_checkpoint, requires_grad, save_checkpoint, update_ema
from torchebm.utils import distributed
from torchebm.utils._ema import EMA
from torchebm.utils._profiling import profile_context
from torchebm.utils.distributed import *  # noqa: F403

__version__ = _version("torchebm")

__all__ = [
    "EMA",
    "update_ema",
    "requires_grad",
    "save_checkpoint",
    "load_checkpoint",
    "profile_context",
    *distributed.__all__,
]
