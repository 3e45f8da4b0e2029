r"""Older names from the seed documentation, kept working with one ``DeprecationWarning`` each."""

from __future__ import annotations

from typing import Any

from torchebm.core._base_model import (
    AckleyModel,
    BaseModel,
    DoubleWellModel,
    GaussianModel,
    HarmonicModel,
    RastriginModel,
    RosenbrockModel,
)
from torchebm.core._module import TorchEBMModule, warn_once

__all__ = [
    "BaseEnergyFunction",
    "DeviceMixin",
    "GaussianEnergy",
    "DoubleWellEnergy",
    "HarmonicEnergy",
    "RastriginEnergy",
    "AckleyEnergy",
    "RosenbrockEnergy",
]


def _warn(old: str, new: str) -> None:
    warn_once(
        f"torchebm.core.{old}",
        f"torchebm.core.{old} is deprecated; use torchebm.core.{new} instead",
        DeprecationWarning,
        stacklevel=4,
    )


class BaseEnergyFunction(BaseModel):
    """Deprecated alias of [`BaseModel`][torchebm.core.BaseModel] (warns once when subclassed or instantiated)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _warn("BaseEnergyFunction", "BaseModel")

    def __init__(self, *args, **kwargs):
        _warn("BaseEnergyFunction", "BaseModel")
        super().__init__(*args, **kwargs)


class DeviceMixin(TorchEBMModule):
    """Deprecated alias of [`TorchEBMModule`][torchebm.core.TorchEBMModule]."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _warn("DeviceMixin", "TorchEBMModule")

    def __init__(self, *args, **kwargs):
        _warn("DeviceMixin", "TorchEBMModule")
        super().__init__(*args, **kwargs)


def _alias(old: str, new_cls: type) -> type:
    def __init__(self, *args, **kwargs):
        _warn(old, new_cls.__name__)
        base: Any = new_cls  # the class itself (mypy reads new_cls.__init__ as an instance's)
        base.__init__(self, *args, **kwargs)

    doc = f"Deprecated alias of `{new_cls.__name__}` (warns once)."
    return type(old, (new_cls,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


GaussianEnergy = _alias("GaussianEnergy", GaussianModel)
DoubleWellEnergy = _alias("DoubleWellEnergy", DoubleWellModel)
HarmonicEnergy = _alias("HarmonicEnergy", HarmonicModel)
RastriginEnergy = _alias("RastriginEnergy", RastriginModel)
AckleyEnergy = _alias("AckleyEnergy", AckleyModel)
RosenbrockEnergy = _alias("RosenbrockEnergy", RosenbrockModel)
