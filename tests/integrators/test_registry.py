"""Integrator registry and resolution rules."""

import pytest
import torch

from torchebm.core import (
    BaseIntegrator,
    BaseRungeKuttaIntegrator,
    BaseSDERungeKuttaIntegrator,
    BaseSymplecticIntegrator,
)
from torchebm.integrators import (
    INTEGRATOR_NAMES,
    EulerMaruyamaIntegrator,
    GeneralisedLeapfrogIntegrator,
    RK4Integrator,
    _integrate_time_grid,
    get_integrator,
    resolve_integrator,
)


@pytest.mark.parametrize("name", sorted(INTEGRATOR_NAMES))
def test_every_name_constructs(name):
    integ = get_integrator(name, dtype=torch.float64)
    assert isinstance(integ, BaseIntegrator) and integ.dtype == torch.float64


def test_aliases():
    assert type(get_integrator("euler")) is EulerMaruyamaIntegrator
    assert type(get_integrator("generalized_leapfrog")) is GeneralisedLeapfrogIntegrator


def test_unknown_name():
    with pytest.raises(ValueError, match="Unknown integrator 'nope'. Valid names"):
        get_integrator("nope")
    with pytest.raises(ValueError, match="Unknown integrator"):
        get_integrator(3)


def test_resolve_rules():
    sde = resolve_integrator(
        None, default="euler", family=BaseSDERungeKuttaIntegrator, owner="LangevinDynamics"
    )
    assert isinstance(sde, EulerMaruyamaIntegrator)
    with pytest.raises(
        TypeError,
        match="LangevinDynamics requires a BaseSDERungeKuttaIntegrator; got RK4Integrator",
    ):
        resolve_integrator(
            "rk4", default="euler", family=BaseSDERungeKuttaIntegrator, owner="LangevinDynamics"
        )
    with pytest.raises(ValueError, match="Unknown integrator"):
        resolve_integrator("bogus", default="euler", family=BaseIntegrator, owner="X")
    inst = RK4Integrator(dtype=torch.float32)
    assert (
        resolve_integrator(
            inst,
            default="rk4",
            family=BaseRungeKuttaIntegrator,
            owner="X",
            device="cpu",
            dtype=torch.float32,
        )
        is inst
    )
    with pytest.raises(ValueError, match="dtype"):
        resolve_integrator(
            inst, default="rk4", family=BaseRungeKuttaIntegrator, owner="X", dtype=torch.float64
        )
    with pytest.raises(TypeError, match="requires a BaseSymplecticIntegrator"):
        resolve_integrator(inst, default="leapfrog", family=BaseSymplecticIntegrator, owner="HMC")
    named = resolve_integrator(
        "heun",
        default="euler",
        family=(BaseSDERungeKuttaIntegrator,),
        owner="X",
        dtype=torch.float64,
    )
    assert named.dtype == torch.float64


def test_integrate_time_grid_utility():
    x = torch.ones(3, 1, dtype=torch.float64)
    seen = []

    def step(x, t, dt):
        seen.append((t.shape, float(dt)))
        return x + dt * x

    out = _integrate_time_grid(x, torch.linspace(0, 1, 5, dtype=torch.float64), step)
    assert torch.allclose(out, torch.full_like(out, 1.25**4))
    assert seen[0] == ((3,), 0.25)
    with pytest.raises(ValueError, match="t must be a 1D tensor"):
        _integrate_time_grid(x, torch.zeros(2, 2), step)
    with pytest.raises(ValueError, match="t must have length >= 2"):
        _integrate_time_grid(x, torch.zeros(1), step)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_cuda_device_follow_and_mismatch():
    integ = get_integrator("dopri5", device="cuda")
    out = integ.integrate({"x": torch.ones(4, 2, device="cuda")}, 0.1, 10, drift=lambda x, t: -x)
    assert out["x"].device.type == "cuda"
    with pytest.raises(ValueError, match="device"):
        resolve_integrator(
            RK4Integrator(), default="rk4", family=BaseIntegrator, owner="X", device="cuda"
        )
