"""A step size of 0 is refused by the leapfrogs' `integrate` as a tensor too (in the host
read that already refuses NaN): before, a tensor ``0.`` returned ``x`` unchanged and a
``(B,)`` step ``[0.1, 0.]`` froze chain 1 silently. The Runge-Kutta and SDE integrators'
`step` keeps taking a Python 0 as a step that moves nothing (a hand-written loop that
anneals the step to 0 ran with torchebm 0.8.9); their `integrate` refuses it. Their `step`
refuses a tensor step holding NaN/inf as `integrate` does (it returned NaN silently), except
under `checked_inputs` (a sampler's loop: no host read per step)."""

from __future__ import annotations

import pytest
import torch

from torchebm.core.errors import ConfigurationError
from torchebm.integrators import (
    BackwardEulerMaruyamaIntegrator,
    EulerMaruyamaIntegrator,
    GeneralisedLeapfrogIntegrator,
    HeunIntegrator,
    LeapfrogIntegrator,
    RK4Integrator,
)
from torchebm.integrators._checked import checked_inputs

_ZERO_STEPS = {
    "0-d": torch.tensor(0.0),
    "(B,) with a zero": torch.tensor([0.1, 0.0]),
    "-0.0": torch.tensor(-0.0),
}


#: the Runge-Kutta and SDE integrators, with the arguments a step of each takes
_RK_AND_SDE = pytest.mark.parametrize(
    "make, kwargs",
    [
        (RK4Integrator, {}),
        (HeunIntegrator, {}),
        (EulerMaruyamaIntegrator, {"noise_scale": 1.0}),
        (BackwardEulerMaruyamaIntegrator, {"noise_scale": 1.0}),
    ],
    ids=["rk4", "heun", "euler_maruyama", "backward_euler_maruyama"],
)


@pytest.mark.parametrize("name", list(_ZERO_STEPS))
def test_the_leapfrogs_refuse_a_tensor_step_with_a_zero_entry(name):
    h = _ZERO_STEPS[name]
    st = {"x": torch.ones(2, 1), "p": torch.ones(2, 1)}
    match = r"step_size must be non-zero in every entry .* got \["
    with pytest.raises(ConfigurationError, match=match):
        LeapfrogIntegrator().integrate(st, h, 3, gradient=lambda x, t: x)
    with pytest.raises(ConfigurationError, match=match):
        LeapfrogIntegrator().step(st, h, gradient=lambda x, t: x)
    with pytest.raises(ConfigurationError, match=match):
        GeneralisedLeapfrogIntegrator().integrate(
            st, h, 3, force=lambda x, p, t: -x, velocity=lambda x, p, t: p
        )


def test_a_non_zero_tensor_step_still_moves_every_chain():
    st = {"x": torch.ones(2, 1), "p": torch.ones(2, 1)}
    out = LeapfrogIntegrator().integrate(st, torch.tensor([0.1, -0.1]), 3, gradient=lambda x, t: x)
    assert bool((out.x != 1.0).all())


@_RK_AND_SDE
@pytest.mark.parametrize("zero", [0.0, 0, -0.0], ids=["0.0", "int 0", "-0.0"])
def test_step_takes_a_python_zero_and_integrate_refuses_it(make, kwargs, zero):
    x = torch.ones(2, 1)
    out = make().step({"x": x}, zero, drift=lambda x, t: -x, **kwargs)["x"]
    assert torch.equal(out, x)  # no move, no noise (the diffusion's scale is sqrt(0))
    with pytest.raises(ConfigurationError, match="step_size must be non-zero"):
        make().integrate({"x": x}, zero, 3, drift=lambda x, t: -x, **kwargs)


def test_step_takes_a_python_zero_under_checked_inputs():
    # a sampler's loop (and checked_inputs) may get 0 from a step-size schedule: a no-op step
    x = torch.ones(2, 1)
    with checked_inputs():
        out = RK4Integrator().step({"x": x}, 0.0, drift=lambda x, t: -x)["x"]
    assert torch.equal(out, x)


@_RK_AND_SDE
@pytest.mark.parametrize(
    "h", [torch.tensor(float("nan")), torch.tensor([0.1, float("inf")])], ids=["0-d", "(B,)"]
)
def test_step_refuses_a_non_finite_tensor_step_as_integrate_does(make, kwargs, h):
    x = torch.ones(2, 1)
    with pytest.raises(ConfigurationError, match=r"step_size must be finite, got \["):
        make().step({"x": x}, h, drift=lambda x, t: -x, **kwargs)  # before: NaN, silently
    with pytest.raises(ConfigurationError, match="step_size must be"):
        make().integrate({"x": x}, h.reshape(-1)[-1], 3, drift=lambda x, t: -x, **kwargs)
    zero = make().step({"x": x}, torch.tensor(0.0), drift=lambda x, t: -x, **kwargs)["x"]
    assert torch.equal(zero, x)  # a tensor 0 passes, as a Python one: no move


def test_step_reads_no_tensor_step_under_checked_inputs():
    # a sampler's loop: no host read per step, the NaN policy watches the chains
    x = torch.ones(2, 1)
    with checked_inputs():
        out = RK4Integrator().step({"x": x}, torch.tensor(float("nan")), drift=lambda x, t: -x)
    assert bool(out["x"].isnan().all())


@pytest.mark.slow
def test_step_with_a_tensor_step_compiles_without_a_graph_break():
    # the finite check's host read broke the graph of a compiled loop of step() calls
    # (2 graphs, ~20x slower per call); fullgraph=True raises on any break
    integrator = RK4Integrator()

    def loop(x, h):
        for _ in range(3):
            x = integrator.step({"x": x}, h, drift=lambda z, t: -z)["x"]
        return x

    x, h = torch.ones(4, 2), torch.tensor(0.1)
    compiled = torch.compile(loop, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x, h), loop(x, h))
