r"""Older names of the core classes, kept working with one ``DeprecationWarning`` each."""

from __future__ import annotations

from torchebm.core import _base_model as models
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
    warn_once(k := f"torchebm.core.{old}", f"{k} is deprecated; use torchebm.core.{new} instead")


class _Deprecated:
    """Mixin of a deprecated class: warns once when it is subclassed or instantiated."""

    _renamed: tuple[str, str]  # (old name, replacement), set by each deprecated class

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "_renamed" not in cls.__dict__:  # a user's subclass, not the alias itself
            _warn(*cls._renamed)

    def __init__(self, *args, **kwargs):
        _warn(*self._renamed)
        super().__init__(*args, **kwargs)


class BaseEnergyFunction(_Deprecated, models.BaseModel):
    """Deprecated alias of [`BaseModel`][torchebm.core.BaseModel] (warns once when subclassed or instantiated)."""

    _renamed = ("BaseEnergyFunction", "BaseModel")


class DeviceMixin(_Deprecated, TorchEBMModule):
    """Deprecated alias of [`TorchEBMModule`][torchebm.core.TorchEBMModule]."""

    _renamed = ("DeviceMixin", "TorchEBMModule")


def _alias(old: str, new_cls: type) -> type:
    doc = f"Deprecated alias of `{new_cls.__name__}` (warns once)."
    namespace = {"_renamed": (old, new_cls.__name__), "__doc__": doc, "__module__": __name__}
    return type(old, (_Deprecated, new_cls), namespace)


GaussianEnergy = _alias("GaussianEnergy", models.GaussianModel)
DoubleWellEnergy = _alias("DoubleWellEnergy", models.DoubleWellModel)
HarmonicEnergy = _alias("HarmonicEnergy", models.HarmonicModel)
RastriginEnergy = _alias("RastriginEnergy", models.RastriginModel)
AckleyEnergy = _alias("AckleyEnergy", models.AckleyModel)
RosenbrockEnergy = _alias("RosenbrockEnergy", models.RosenbrockModel)
