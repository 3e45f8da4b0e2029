"""Integrators called standalone, as a torchdiffeq / torchsde user calls them: inputs that
were refused, accepted silently, or failed with a message about something else."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torchebm.core.errors import ConfigurationError, ShapeError
from torchebm.integrators import (
    Dopri5Integrator,
    EulerMaruyamaIntegrator,
    LeapfrogIntegrator,
    RK4Integrator,
)

F64 = torch.float64


def decay(x, t):
    return -x


@pytest.mark.parametrize("first_step", [1e-16, 1e-20])
def test_a_tiny_first_adaptive_step_grows_instead_of_raising_underflow(first_step):
    # before: "step size underflow at t=1e-16 (error ratio 0.0) ... too stiff" after an
    # accepted step whose successor would have grown tenfold
    x0 = torch.ones(2, 1, dtype=F64)
    out = Dopri5Integrator(atol=1e-8, rtol=1e-8).integrate(
        {"x": x0}, first_step, t=torch.tensor([0.0, 1.0], dtype=F64), drift=decay
    )["x"]
    torch.testing.assert_close(out, x0 * math.exp(-1.0), atol=1e-7, rtol=0)


def test_a_blow_up_still_underflows_with_both_causes_named():
    # x' = x^2 from x(0) = 1 blows up at t = 1
    with pytest.raises(RuntimeError, match="underflow.*stiff.*blows up near t"):
        Dopri5Integrator(atol=1e-6, rtol=1e-6).integrate(
            {"x": torch.ones(1, 1, dtype=F64)},
            t=torch.tensor([0.0, 2.0], dtype=F64),
            drift=lambda x, t: x.square(),
        )


@pytest.mark.parametrize("safety", [1.5, 2.0])
def test_safety_above_one_is_refused(safety):
    # before: accepted, then "maximum number of steps exceeded" at t = 0.118
    with pytest.raises(ConfigurationError, match=rf"safety must be in \(0, 1\], got {safety}"):
        Dopri5Integrator(safety=safety)
    assert Dopri5Integrator(safety=1.0).safety == 1.0


def test_noise_without_a_diffusion_is_refused():
    # before: a deterministic Euler step, the noise dropped silently
    x = torch.zeros(3, 2)
    with pytest.raises(ConfigurationError, match="noise= was given without diffusion="):
        EulerMaruyamaIntegrator().step({"x": x}, 0.1, drift=decay, noise=torch.ones(3, 2))
    out = EulerMaruyamaIntegrator().step(
        {"x": x}, 0.1, drift=decay, noise=torch.ones(3, 2), noise_scale=1.0
    )["x"]
    torch.testing.assert_close(out, torch.full((3, 2), math.sqrt(0.2)))


@pytest.mark.parametrize("scalar", [np.float32(0.1), np.float64(0.1), np.int64(1)])
def test_numpy_scalars_are_numbers(scalar):
    # before: np.float32 step sizes and noise scales were refused ("must be a number")
    x = torch.ones(2, 1, dtype=F64)
    h = float(scalar)
    out = RK4Integrator().integrate({"x": x}, scalar, 3, drift=decay)["x"]
    torch.testing.assert_close(out, RK4Integrator().integrate({"x": x}, h, 3, drift=decay)["x"])
    noise = torch.ones_like(x)
    em = EulerMaruyamaIntegrator()
    got = em.step({"x": x}, scalar, drift=decay, noise=noise, noise_scale=scalar)["x"]
    want = em.step({"x": x}, h, drift=decay, noise=noise, noise_scale=h)["x"]
    torch.testing.assert_close(got, want)
    with pytest.raises(TypeError, match="step_size must be a number"):
        RK4Integrator().integrate({"x": x}, "0.1", 3, drift=decay)


def test_leapfrog_energy_of_the_wrong_shape_is_refused():
    # before: energy=lambda x, t: x gave a (B, D) "energy" in the result
    state = {"x": torch.ones(3, 2), "p": torch.zeros(3, 2)}
    with pytest.raises(ShapeError, match=r"energy must return energies of shape \(B,\) = \(3,\)"):
        LeapfrogIntegrator().integrate(
            state, 0.1, 2, gradient=lambda x, t: x, energy=lambda x, t: x
        )
    out = LeapfrogIntegrator().integrate(
        state, 0.1, 2, gradient=lambda x, t: x, energy=lambda x, t: 0.5 * x.square().sum(1)
    )
    torch.testing.assert_close(out.energy, 0.5 * out.x.square().sum(1))


def test_an_inconsistent_tableau_is_refused():
    # before: a Ralston typo (c = (0, 0.5)) ran at order 0.97, and sum(b) = 0.9 converged to
    # a wrong answer (order 0), both without a word
    from torchebm.integrators import BaseRungeKuttaIntegrator

    def tableau(a, b, c, e=None):
        attrs = {"tableau_a": a, "tableau_b": b, "tableau_c": c}
        if e is not None:
            attrs.update(error_weights=e, order=2)
        return type("UserTableau", (BaseRungeKuttaIntegrator,), attrs)

    with pytest.raises(ConfigurationError, match=r"sum\(tableau_a\[1\]\) = tableau_c\[1\] = 0.5"):
        tableau(((), (2 / 3,)), (0.25, 0.75), (0.0, 0.5))()
    with pytest.raises(ConfigurationError, match=r"sum\(tableau_b\) = 1.0 is required, got 0.9"):
        tableau(((), (2 / 3,)), (0.25, 0.65), (0.0, 2 / 3))()
    with pytest.raises(ConfigurationError, match=r"sum\(error_weights\) = 0.0"):
        tableau(((), (1.0,)), (0.5, 0.5), (0.0, 1.0), e=(0.5, -0.4))()
    ralston = tableau(((), (0.666666667,)), (0.25, 0.75), (0.0, 2 / 3))()  # a 9-digit table
    x = torch.ones(1, 1, dtype=F64)
    out = ralston.integrate({"x": x}, 0.01, 100, drift=decay)["x"]
    torch.testing.assert_close(out, x * math.exp(-1.0), atol=1e-5, rtol=0)


def test_standalone_integrate_warns_when_implicit_solves_do_not_converge():
    # before: h * lambda = 10 gave NaN (or -4.6e-13 for 0.540 at h * lambda = 1) with no
    # word; only the samplers reported unconverged solves
    import warnings

    from torchebm.integrators import BackwardEulerMaruyamaIntegrator

    lam = 1e4

    def stiff(x, t):
        return -lam * (x - torch.cos(t)[:, None])

    x0 = torch.zeros(2, 1, dtype=F64)
    with pytest.warns(RuntimeWarning, match=r"did not converge in 2 of 2 chains.*now 8"):
        BackwardEulerMaruyamaIntegrator().integrate({"x": x0}, 1e-3, 10, drift=stiff)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # h * lambda = 0.1: converged, silent
        BackwardEulerMaruyamaIntegrator(solver_max_iter=40).integrate(
            {"x": x0}, 1e-5, 10, drift=stiff
        )
