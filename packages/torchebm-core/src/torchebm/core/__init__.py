r"""``torchebm.core``: modules, energy models, schedulers and the base classes of every piece.

Install alone with ``pip install torchebm-core``; ``torchebm`` is a PEP 420 namespace, so
``import torchebm.samplers`` works only when ``torchebm-samplers`` is installed too.

Machinery that a single piece uses lives in that piece; its old names here
(``BaseRungeKuttaIntegrator``, ``BaseSDERungeKuttaIntegrator``, ``BaseSymplecticIntegrator``
from ``torchebm-flows``;
``BaseContrastiveDivergence``, ``BaseScoreMatching``, ``BaseTrainer``, ``TrainerCallback``
from ``torchebm-losses``) are imported lazily on first access (see ``_moved.py``).
"""

from importlib.metadata import version as _version

from torchebm.core import distributed, errors, metrics
from torchebm.core._base_coupling import (
    BaseCostCoupling,
    BaseCoupling,
    BaseModelCoupling,
    CouplingResult,
)
from torchebm.core._base_integrator import BaseIntegrator
from torchebm.core._base_interpolant import BaseInterpolant, expand_t_like_x
from torchebm.core._base_loss import BaseLoss
from torchebm.core._base_model import (
    AckleyModel,
    BaseModel,
    DoubleWellModel,
    GaussianModel,
    HarmonicModel,
    RastriginModel,
    RosenbrockModel,
)
from torchebm.core._base_sampler import (
    NAN_POLICIES,
    BaseSampler,
    SamplerContext,
    SamplerState,
    shared_field,
)
from torchebm.core._conditioning import Conditioning, substitute_condition
from torchebm.core._deprecated import (
    AckleyEnergy,
    BaseEnergyFunction,
    DeviceMixin,
    DoubleWellEnergy,
    GaussianEnergy,
    HarmonicEnergy,
    RastriginEnergy,
    RosenbrockEnergy,
)
from torchebm.core._module import TorchEBMModule, warn_once
from torchebm.core._moved import MOVED as _MOVED
from torchebm.core._moved import resolve_moved as _resolve_moved
from torchebm.core._renamed import renamed_kwargs
from torchebm.core._schedulable import Schedulable
from torchebm.core._schedulers import (
    BaseScheduler,
    ConstantScheduler,
    CosineScheduler,
    ExponentialDecayScheduler,
    LinearScheduler,
    MultiStepScheduler,
    TemperatureScheduler,
    WarmupScheduler,
)
from torchebm.core._test_functions import BoothModel, HimmelblauModel, StyblinskiTangModel
from torchebm.core._training import load_checkpoint, requires_grad, save_checkpoint, update_ema
from torchebm.core._versions import versions

__version__ = _version("torchebm-core")

__all__ = [
    "TorchEBMModule",
    "warn_once",
    "errors",
    "metrics",
    "versions",
    "BaseModel",
    "DoubleWellModel",
    "GaussianModel",
    "HarmonicModel",
    "RastriginModel",
    "AckleyModel",
    "RosenbrockModel",
    "BoothModel",
    "HimmelblauModel",
    "StyblinskiTangModel",
    "renamed_kwargs",
    "Conditioning",
    "substitute_condition",
    "BaseSampler",
    "SamplerContext",
    "SamplerState",
    "shared_field",
    "NAN_POLICIES",
    "BaseLoss",
    "BaseIntegrator",
    "BaseInterpolant",
    "BaseCoupling",
    "BaseCostCoupling",
    "BaseModelCoupling",
    "CouplingResult",
    "expand_t_like_x",
    "BaseScheduler",
    "ConstantScheduler",
    "ExponentialDecayScheduler",
    "LinearScheduler",
    "CosineScheduler",
    "MultiStepScheduler",
    "WarmupScheduler",
    "TemperatureScheduler",
    "Schedulable",
    "distributed",
    "update_ema",
    "requires_grad",
    "save_checkpoint",
    "load_checkpoint",
    # deprecated aliases (one DeprecationWarning each)
    "BaseEnergyFunction",
    "DeviceMixin",
    "GaussianEnergy",
    "DoubleWellEnergy",
    "HarmonicEnergy",
    "RastriginEnergy",
    "AckleyEnergy",
    "RosenbrockEnergy",
]


def __getattr__(name: str):
    """Names that moved into a sibling piece (see `torchebm.core._moved`), imported lazily."""
    return _resolve_moved(name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_MOVED})
