"""The published torchebm 0.8.9's public API resolves here.

The fixture ``fixtures/api_089.json`` is written by ``tools/api_089_fixture.py`` from the
unpacked 0.8.9 wheel: every public module path, every name in each module's ``__all__``
and every public class's constructor parameter names. Each one must import / exist /
be accepted here, except the deliberate exceptions below (each with its reason).
A renamed parameter counts as accepted when the constructor lists it as a deprecated
keyword alias (``__renamed_kwargs__``, see ``torchebm.core.renamed_kwargs``).
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import pytest
import torch

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "api_089.json").read_text())

# module path -> reason
MODULE_EXCEPTIONS: dict[str, str] = {}
# "module.Name" -> reason (names in __all__ or defined by the 0.8.9 module)
NAME_EXCEPTIONS: dict[str, str] = {
    "torchebm.core.base_loss.BaseInterpolantLoss": (
        "0.8.9-internal base (never in __all__); its options live on each loss here"
    ),
}
# "module.Class.param" -> reason
PARAM_EXCEPTIONS: dict[str, str] = {
    "torchebm.core.BaseModel.device": "accepted through **kwargs (TorchEBMModule); tested below",
}


def _module(path: str):
    try:
        return importlib.import_module(path)
    except ImportError:
        return None


def _resolve_class(key: str):
    mod_path, name = key.rsplit(".", 1)
    candidates = [mod_path] + [m for m, ns in FIXTURE["names"].items() if name in ns]
    for m in candidates:
        mod = _module(m)
        if mod is not None and hasattr(mod, name):
            return getattr(mod, name)
    return None


def _accepted(cls, param: str) -> bool:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    if param in params:
        return True
    return param in getattr(cls.__init__, "__renamed_kwargs__", {})


def coverage() -> dict[str, tuple[int, int]]:
    """(resolved, total) for modules, names and constructor parameters."""
    mods = FIXTURE["modules"]
    ok_mods = sum(_module(m) is not None for m in mods)
    total_names = ok_names = 0
    for m, names in FIXTURE["names"].items():
        mod = _module(m)
        for n in names:
            total_names += 1
            ok_names += mod is not None and hasattr(mod, n)
    total_params = ok_params = 0
    for key, params in FIXTURE["params"].items():
        cls = _resolve_class(key)
        for p in params:
            total_params += 1
            ok_params += cls is not None and _accepted(cls, p)
    return {
        "modules": (ok_mods, len(mods)),
        "names": (ok_names, total_names),
        "params": (ok_params, total_params),
    }


def test_fixture_is_small_and_complete():
    assert len(FIXTURE["modules"]) == 64
    assert sum(len(v) for v in FIXTURE["names"].values()) == 184


@pytest.mark.parametrize("path", FIXTURE["modules"])
def test_module_imports(path):
    if path in MODULE_EXCEPTIONS:
        pytest.skip(MODULE_EXCEPTIONS[path])
    importlib.import_module(path)


@pytest.mark.parametrize(
    "key", [f"{m}.{n}" for m, names in FIXTURE["names"].items() for n in names]
)
def test_name_exists(key):
    if key in NAME_EXCEPTIONS:
        pytest.skip(NAME_EXCEPTIONS[key])
    mod_path, name = key.rsplit(".", 1)
    assert hasattr(importlib.import_module(mod_path), name), key


@pytest.mark.parametrize(
    "key", [f"{m}.{n}" for m, names in FIXTURE["defined"].items() for n in names]
)
def test_defined_name_exists(key):
    """What ``from torchebm.<module> import X`` reached in 0.8.9, ``__all__`` or not."""
    if key in NAME_EXCEPTIONS:
        pytest.skip(NAME_EXCEPTIONS[key])
    mod_path, name = key.rsplit(".", 1)
    assert hasattr(importlib.import_module(mod_path), name), key


# library names that 0.8.9's modules imported at module level (read off its sources):
# `from torchebm.couplings.ot import CouplingResult` worked there
IMPORTED_089 = {
    "torchebm.couplings.independent": ["BaseCoupling", "CouplingResult"],
    "torchebm.couplings.model_induced": ["BaseModelCoupling"],
    "torchebm.couplings.ot": ["BaseCostCoupling", "CouplingResult"],
    "torchebm.interpolants.cosine": ["BaseInterpolant"],
    "torchebm.interpolants.linear": ["BaseInterpolant"],
    "torchebm.interpolants.variance_preserving": ["BaseInterpolant", "expand_t_like_x"],
    "torchebm.losses.energy_matching": [
        "BaseCoupling", "BaseInterpolant", "BaseLoss", "BaseModel", "BaseScheduler",
        "ConstantScheduler", "TemperatureScheduler", "compute_flow_weight", "mean_flat",
        "trimmed_mean",
    ],
    "torchebm.losses.equilibrium_matching": [
        "BaseCoupling", "BaseInterpolant", "BaseScheduler", "expand_t_like_x",
        "compute_eqm_ct", "dispersive_loss", "mean_flat",
    ],
    "torchebm.losses.flow_matching": ["BaseCoupling", "BaseInterpolant", "BaseScheduler", "mean_flat"],
    "torchebm.samplers.flow": [
        "BaseInterpolant", "BaseSampler", "BaseScheduler", "expand_t_like_x",
        "BaseRungeKuttaIntegrator", "BaseSDERungeKuttaIntegrator", "resolve_integrator",
        "CosineInterpolant", "LinearInterpolant", "VariancePreservingInterpolant",
        "resolve_interpolant",
    ],
    "torchebm.samplers.gradient_descent": ["BaseModel", "BaseSampler", "BaseScheduler"],
}  # fmt: skip
CANONICAL = ("torchebm.core", "torchebm.losses", "torchebm.integrators", "torchebm.interpolants")


@pytest.mark.parametrize("module", sorted(IMPORTED_089))
def test_names_0_8_9_modules_imported_import_from_there_again(module):
    mod = importlib.import_module(module)
    for name in IMPORTED_089[module]:
        homes = [importlib.import_module(c) for c in CANONICAL]
        same = [getattr(h, name) for h in homes if hasattr(h, name)]
        assert hasattr(mod, name) and same and getattr(mod, name) is same[0], (module, name)


# names the fixture (``__all__``, classes and functions) does not list: 0.8.9's explicit
# "compat re-exports" of base_module, a private name in 0.8.9's `torchebm.integrators.__all__`
# defined in integrator_utils, and a type alias (a module-level assignment)
OUTSIDE_FIXTURE_089 = {
    "torchebm.core.base_module": ["warn_once"],
    "torchebm.integrators.integrator_utils": ["_integrate_time_grid"],
    "torchebm.integrators.leapfrog": ["HamiltonField"],
}


@pytest.mark.parametrize("module", sorted(OUTSIDE_FIXTURE_089))
def test_names_0_8_9_exported_outside_the_fixture_import_from_there(module):
    mod = importlib.import_module(module)
    for name in OUTSIDE_FIXTURE_089[module]:
        assert hasattr(mod, name), (module, name)
    if module == "torchebm.core.base_module":
        from torchebm.core import warn_once

        assert mod.warn_once is warn_once


def test_base_model_accepts_device_keyword():
    from torchebm.core import BaseModel

    class M(BaseModel):
        def forward(self, x):
            return x.sum(-1)

    assert M(device="cpu").device == torch.device("cpu")


@pytest.mark.parametrize("key", sorted(FIXTURE["params"]))
def test_constructor_accepts_089_parameters(key):
    cls = _resolve_class(key)
    assert cls is not None, key
    missing = [
        p
        for p in FIXTURE["params"][key]
        if f"{key}.{p}" not in PARAM_EXCEPTIONS and not _accepted(cls, p)
    ]
    assert not missing, f"{key} does not accept {missing}"


def test_exceptions_are_real_and_few():
    # an exception that no longer fails must be removed from the list
    for path in MODULE_EXCEPTIONS:
        assert _module(path) is None, f"{path} imports now; drop its exception"
    for key in NAME_EXCEPTIONS:
        mod_path, name = key.rsplit(".", 1)
        assert not hasattr(_module(mod_path), name), f"{key} resolves now; drop its exception"
    assert len(MODULE_EXCEPTIONS) + len(NAME_EXCEPTIONS) + len(PARAM_EXCEPTIONS) <= 10


if __name__ == "__main__":
    for k, (ok, tot) in coverage().items():
        print(f"{k}: {ok}/{tot}")
