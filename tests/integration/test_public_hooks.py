"""No library class overrides a private method of a base class (issue 16, DESIGN.md section 2).

A subclass extends the library through public, documented hooks (`BaseSampler.step`,
`BaseScheduler.compute_value`, `BaseSyntheticDataset.generate_data`, an analytic model's
`closed_form_energy`/`closed_form_gradient`, ...). The torchebm 0.8 names some of them
replace (`_compute_value`, `_generate_data`) keep working for user subclasses, but the
library's own classes implement only the public names.

Allowed: dunder methods, `nn.Module._apply` (`TorchEBMModule` drops its cached placement
when `.to()`/`.double()` move the tree: PyTorch has no public hook for that) and `enum`'s
`_sunder_` hooks. State-dict loading goes through the public load hooks, so
`_load_from_state_dict` is not allowed. Class attributes that are data (flags, tuples of
names) are not methods and are not checked.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

PORTIONS = (
    "core",
    "samplers",
    "losses",
    "flows",
    "integrators",
    "interpolants",
    "couplings",
    "models",
    "datasets",
    "metrics",
    "visualization",
    "cuda",
)
NN_MODULE_OVERRIDE_POINTS = {"_apply"}


def _is_method(value: object) -> bool:
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    return inspect.isfunction(value) or isinstance(value, property)


def _private_overrides(cls: type) -> list[str]:
    found = []
    for name, value in vars(cls).items():
        if not name.startswith("_") or name.startswith("__") or not _is_method(value):
            continue
        if name in NN_MODULE_OVERRIDE_POINTS or name.endswith("_"):  # Enum's _sunder_ hooks
            continue
        for base in cls.__mro__[1:]:
            if name in vars(base):
                found.append(
                    f"{cls.__module__}.{cls.__qualname__}.{name} overrides {base.__qualname__}'s"
                )
                break
    return found


def _library_classes() -> list[type]:
    classes: dict[str, type] = {}
    for portion in PORTIONS:
        try:
            package = importlib.import_module(f"torchebm.{portion}")
        except ImportError:
            continue
        modules = [package]
        for info in pkgutil.walk_packages(package.__path__, f"torchebm.{portion}."):
            if info.name.endswith("__main__"):  # a command line entry point runs on import
                continue
            try:
                modules.append(importlib.import_module(info.name))
            except ImportError:  # an optional dependency (triton, ...) is not installed
                continue
        for module in modules:
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__.startswith("torchebm."):
                    classes[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(classes.values())


def test_the_check_finds_a_private_override():
    class Base:
        def _hook(self):
            return 1

    class Child(Base):
        def _hook(self):
            return 2

        def _own_helper(self):  # not an override
            return 3

    assert _private_overrides(Child) == [
        f"{__name__}.{Child.__qualname__}._hook overrides {Base.__qualname__}'s"
    ]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_no_library_class_overrides_a_private_method_of_a_base_class():
    classes = _library_classes()
    assert len(classes) > 100  # the walk reached the pieces
    found = sorted(hit for cls in classes for hit in _private_overrides(cls))
    assert not found, "\n".join(found)
