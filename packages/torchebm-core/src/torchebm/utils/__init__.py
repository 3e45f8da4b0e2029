r"""``torchebm.utils``: training utilities (EMA, checkpoints, profiling, distributed helpers).

The torchebm 0.8.x home of these names, kept as a supported path. It is a portion of the
``torchebm-core`` distribution and holds no code of its own: `EMA` and `profile_context`
are implemented in core, the functional helpers are those of ``torchebm.core`` and
``torchebm.core.distributed``.

Example:
    >>> from torchebm.utils import EMA, requires_grad
    >>> ema = EMA(model, decay=0.999, decay_schedule="warmup")
"""

from importlib.metadata import version as _version

from torchebm.core import load_checkpoint, requires_grad, save_checkpoint, update_ema
from torchebm.core._ema import EMA
from torchebm.core._profiling import profile_context
from torchebm.utils import distributed
from torchebm.utils.distributed import *  # noqa: F403

__version__ = _version("torchebm-core")

__all__ = [
    "EMA",
    "update_ema",
    "requires_grad",
    "save_checkpoint",
    "load_checkpoint",
    "profile_context",
    *distributed.__all__,
]
