"""Inputs a fuzz of the public signatures found unchecked in the integrators: a generator that
is not a torch.Generator failed inside torch.randn, and the leapfrog with step_size=0 returned
its input unchanged where every other integrator refuses a zero step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchebm.core.errors import ConfigurationError
from torchebm.integrators import EulerMaruyamaIntegrator, LeapfrogIntegrator


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
