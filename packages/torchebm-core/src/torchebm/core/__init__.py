r"""``torchebm.core``: modules, energy models, schedulers and the base classes of every piece.

Machinery that a single piece uses lives in that piece; its old names here (e.g.
``BaseRungeKuttaIntegrator``, ``BaseTrainer``) are imported lazily from it (``_moved.py``)."""

from importlib.metadata import version as _version

from torchebm.core import _base_coupling as _couplings
from torchebm.core import _base_model, _deprecated, _schedulers, _training, distributed, errors
from torchebm.core import _base_sampler as _samplers
from torchebm.core._base_coupling import *  # noqa: F403
from torchebm.core._base_integrator import BaseIntegrator
from torchebm.core._base_interpolant import BaseInterpolant, expand_t_like_x
from torchebm.core._base_loss import BaseLoss
from torchebm.core._base_model import *  # noqa: F403
from torchebm.core._base_sampler import *  # noqa: F403
from torchebm.core._conditioning import Conditioning, substitute_condition
from torchebm.core._deprecated import *  # noqa: F403
from torchebm.core._module import TorchEBMModule, warn_once
from torchebm.core._moved import MOVED as _MOVED
from torchebm.core._moved import resolve_moved as _resolve_moved
from torchebm.core._renamed import renamed_kwargs
from torchebm.core._schedulable import Schedulable, ScheduledParameter
from torchebm.core._schedulers import *  # noqa: F403
from torchebm.core._training import *  # noqa: F403
from torchebm.core._versions import versions

__version__ = _version("torchebm-core")

__all__ = [
    "TorchEBMModule",
    "warn_once",
    "errors",
    "versions",
    *_base_model.__all__,
    "renamed_kwargs",
    "Conditioning",
    "substitute_condition",
    *_samplers.__all__,
    "BaseLoss",
    "BaseIntegrator",
    "BaseInterpolant",
    *_couplings.__all__,
    "expand_t_like_x",
    *_schedulers.__all__,
    "Schedulable",
    "ScheduledParameter",
    "distributed",
    *_training.__all__,
    *_deprecated.__all__,  # deprecated aliases (one DeprecationWarning each)
]


def __getattr__(name: str):
    """Names that moved into a sibling piece (see `torchebm.core._moved`), imported lazily."""
    return _resolve_moved(name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_MOVED})
