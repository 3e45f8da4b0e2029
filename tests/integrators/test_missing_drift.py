"""A Runge-Kutta or SDE integrator's `step`/`integrate` called without ``drift`` raises the
`ConfigurationError` (a ``ValueError``) that ``drift=None`` raises, as torchebm 0.8.9's
``ValueError("drift must be provided explicitly ...")`` did; before, Python's own
``TypeError: missing 1 required keyword-only argument: 'drift'``. The leapfrogs, whose
fields were already optional keywords, name the missing field the same way."""

from __future__ import annotations

import pytest
import torch

import torchebm.integrators as integrators
from torchebm.core.errors import ConfigurationError
from torchebm.integrators import (
    BaseRungeKuttaIntegrator,
    BaseSDERungeKuttaIntegrator,
    GeneralisedLeapfrogIntegrator,
    LeapfrogIntegrator,
)

_RK = sorted(
    name
    for name in integrators.__all__
    if name.endswith("Integrator")
    and not name.startswith("Base")
    and issubclass(getattr(integrators, name), BaseRungeKuttaIntegrator)
)
_MISSING = "drift must be provided explicitly as a callable drift"


def test_every_runge_kutta_family_is_covered():
    assert {"EulerMaruyamaIntegrator", "RK4Integrator", "Dopri5Integrator"} <= set(_RK)


@pytest.mark.parametrize("name", _RK)
def test_runge_kutta_step_and_integrate_without_drift_raise_as_drift_none(name):
    integ = getattr(integrators, name)()
    x = {"x": torch.zeros(2, 2)}
    calls = {
        "step": lambda **kw: integ.step(x, 0.1, **kw),
        "integrate": lambda **kw: integ.integrate(x, 0.1, 2, **kw),
        "integrate on a grid": lambda **kw: integ.integrate(x, t=torch.linspace(0, 1, 3), **kw),
    }
    if isinstance(integ, BaseSDERungeKuttaIntegrator):
        calls["noisy step"] = lambda **kw: integ.step(x, 0.1, noise_scale=1.0, **kw)
        calls["noisy integrate"] = lambda **kw: integ.integrate(x, 0.1, 2, noise_scale=1.0, **kw)
    for what, call in calls.items():
        for kwargs in ({}, {"drift": None}):
            with pytest.raises(ConfigurationError, match=_MISSING) as info:
                call(**kwargs)
            assert isinstance(info.value, ValueError), (what, kwargs)


def test_the_leapfrogs_name_a_missing_field():
    st = {"x": torch.zeros(2, 2), "p": torch.zeros(2, 2)}
    with pytest.raises(ConfigurationError, match="gradient or drift must be provided"):
        LeapfrogIntegrator().step(st, 0.1)
    with pytest.raises(ConfigurationError, match="gradient or drift must be provided"):
        LeapfrogIntegrator().integrate(st, 0.1, 2)
    gl = GeneralisedLeapfrogIntegrator()
    with pytest.raises(ConfigurationError, match="force must be provided"):
        gl.integrate(st, 0.1, 2, velocity=lambda x, p, t: p)
    with pytest.raises(ConfigurationError, match="velocity must be provided"):
        gl.step(st, 0.1, force=lambda x, p, t: -x)


def test_a_model_keyword_is_still_refused_as_in_089():
    # torchebm 0.8.9 had no model= either (Python's TypeError): integrators never take one
    with pytest.raises(TypeError, match="model"):
        integrators.EulerMaruyamaIntegrator().step({"x": torch.zeros(2, 2)}, 0.1, model=object())
