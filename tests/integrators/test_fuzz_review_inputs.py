"""Inputs a fuzz of the public signatures found unchecked in the integrators: a generator that
is not a torch.Generator failed inside torch.randn, and the leapfrog with step_size=0 returned
its input unchanged where every other integrator refuses a zero step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchebm.core.errors import ConfigurationError, ShapeError
from torchebm.integrators import EulerMaruyamaIntegrator, LeapfrogIntegrator, RK4Integrator


@pytest.mark.parametrize("generator", [3, np.random.default_rng(0)], ids=["int", "numpy"])
def test_a_stochastic_integrate_names_a_bad_generator(generator):
    x = torch.randn(4, 2)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        EulerMaruyamaIntegrator().integrate(
            {"x": x}, 0.1, 3, drift=lambda x, t: -x, diffusion=1.0, generator=generator
        )


def test_the_leapfrog_refuses_a_zero_step_and_takes_a_negative_one():
    x, p = torch.randn(4, 2), torch.randn(4, 2)
    leapfrog = LeapfrogIntegrator()
    with pytest.raises(ConfigurationError, match="step_size must be non-zero"):
        leapfrog.integrate({"x": x, "p": p}, 0.0, 3, gradient=lambda z, t: z)
    out = leapfrog.integrate({"x": x, "p": p}, 0.1, 3, gradient=lambda z, t: z)
    back = leapfrog.integrate({"x": out["x"], "p": out["p"]}, -0.1, 3, gradient=lambda z, t: z)
    assert torch.allclose(back["x"], x, atol=1e-6) and torch.allclose(back["p"], p, atol=1e-6)


@pytest.mark.parametrize("flag", ["safe", "inference_mode"])
def test_the_integrators_flags_are_bools(flag):
    # read through truthiness: the string "False" turned the safe mode (NaN zeroed) or
    # inference mode on
    x, p = torch.randn(4, 2), torch.randn(4, 2)
    with pytest.raises(TypeError, match=f"{flag} must be a bool, got 'False'"):
        LeapfrogIntegrator().integrate(
            {"x": x, "p": p}, 0.1, 2, gradient=lambda z, t: z, **{flag: "False"}
        )


def test_a_0_d_state_is_a_shape_error_and_a_numpy_time_is_a_number():
    # a 0-d state failed with a bare IndexError deep in the step
    with pytest.raises(ShapeError, match="0-d tensor"):
        RK4Integrator().integrate({"x": torch.tensor(1.0)}, 0.1, 10, drift=lambda x, t: -x)
    with pytest.raises(ShapeError, match="0-d tensor"):
        LeapfrogIntegrator().integrate(
            {"x": torch.tensor(1.0), "p": torch.tensor(0.0)}, 0.1, 3, gradient=lambda x, t: x
        )
    # np.float32(0.5) was "not a number or a tensor"; a Python 0.5 is the reference
    state, f = {"x": torch.ones(4, 2)}, lambda x, t: -x * t[:, None]
    by_numpy = RK4Integrator().step(state, 0.1, drift=f, t=np.float32(0.5))["x"]
    assert torch.equal(by_numpy, RK4Integrator().step(state, 0.1, drift=f, t=0.5)["x"])


def test_under_autocast_only_a_narrower_field_is_accepted_and_p_must_match_x():
    # autocast's exemption let a float64 drift promote a float32 state to float64
    x = torch.randn(4, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(TypeError, match="returned dtype torch.float64"):
            RK4Integrator().integrate({"x": x}, 0.1, 3, drift=lambda z, t: (-z).double())
        out = RK4Integrator().integrate({"x": x}, 0.1, 3, drift=lambda z, t: (-z).bfloat16())
        assert out["x"].dtype == torch.float32
    # a float64 p promoted x, and the error blamed the gradient (the identity here)
    with pytest.raises(TypeError, match=r"state\['p'\] must have the dtype of state\['x'\]"):
        LeapfrogIntegrator().integrate(
            {"x": torch.zeros(3, 2), "p": torch.ones(3, 2, dtype=torch.float64)}, 0.1, 3,
            gradient=lambda z, t: z,
        )  # fmt: skip
