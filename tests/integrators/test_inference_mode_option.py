"""`inference_mode=True` runs every integrator's `integrate` under `torch.inference_mode()`,
with the same numbers as a plain call, and keeps the documented public signature."""

import inspect

import pytest
import torch

from torchebm.integrators import (
    EulerMaruyamaIntegrator,
    GeneralisedLeapfrogIntegrator,
    LeapfrogIntegrator,
    RK4Integrator,
)

F64 = torch.float64


def _x():
    return torch.linspace(-1.0, 1.0, 6, dtype=F64).reshape(3, 2)


def _rk4(**kw):
    return RK4Integrator().integrate({"x": _x()}, 0.1, 4, drift=lambda x, t: -x, **kw)["x"]


def _sde(**kw):
    g = torch.Generator().manual_seed(3)
    return EulerMaruyamaIntegrator().integrate(
        {"x": _x()}, 0.1, 4, drift=lambda x, t: -x, noise_scale=0.5, generator=g, **kw
    )["x"]


def _sde_ode(**kw):
    return EulerMaruyamaIntegrator().integrate({"x": _x()}, 0.1, 4, drift=lambda x, t: -x, **kw)[
        "x"
    ]


def _leapfrog(**kw):
    state = {"x": _x(), "p": torch.ones(3, 2, dtype=F64)}
    return LeapfrogIntegrator().integrate(state, 0.1, 4, gradient=lambda x, t: x, **kw).x


def _generalised(**kw):
    state = {"x": _x(), "p": torch.ones(3, 2, dtype=F64)}
    gl = GeneralisedLeapfrogIntegrator()
    return gl.integrate(state, 0.1, 4, force=lambda x, p, t: -x, velocity=lambda x, p, t: p, **kw).x


@pytest.mark.parametrize("run", [_rk4, _sde, _sde_ode, _leapfrog, _generalised])
def test_inference_mode_option(run):
    plain = run()
    inferred = run(inference_mode=True)
    assert inferred.is_inference() and not plain.is_inference()
    assert not run(inference_mode=False).is_inference()
    assert torch.equal(plain, inferred)


@pytest.mark.parametrize(
    "cls",
    [RK4Integrator, EulerMaruyamaIntegrator, LeapfrogIntegrator, GeneralisedLeapfrogIntegrator],
)
def test_signature_keeps_inference_mode(cls):
    param = inspect.signature(cls.integrate).parameters["inference_mode"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is False
