"""torchebm 0.8.9 integrators: whole pickles load here, and a user's Runge-Kutta subclass
that gives its Butcher tableau as properties (0.8.9's abstract properties) still works.

The pickles are rebuilt by hand in 0.8.9's attribute layout (`_support.pickles_089`: the
error norm stored as ``_norm``, the tableau as buffers ``_buf_a`` ... ``_buf_e``, no
evaluation counters).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from _support.pickles_089 import assert_upgrade_matches, unpickle_089

from torchebm.integrators import (
    AdaptiveHeunIntegrator,
    BackwardEulerMaruyamaIntegrator,
    BaseRungeKuttaIntegrator,
    Dopri5Integrator,
    EulerMaruyamaIntegrator,
    GeneralisedLeapfrogIntegrator,
    HeunIntegrator,
    LeapfrogIntegrator,
    MidpointIntegrator,
    RK4Integrator,
)

X = torch.linspace(-1.0, 1.0, 8).reshape(4, 2)


def max_norm(z):
    return z.abs().max()


CASES = {
    "rk4": RK4Integrator,
    "midpoint": MidpointIntegrator,
    "dopri5_options": lambda: Dopri5Integrator(atol=1e-5, rtol=1e-4, max_steps=500, norm=max_norm),
    "adaptive_heun": lambda: AdaptiveHeunIntegrator(safety=0.8, max_step_size=0.5),
    "euler_maruyama": EulerMaruyamaIntegrator,
    "heun": HeunIntegrator,
    "backward_euler_maruyama": lambda: BackwardEulerMaruyamaIntegrator(solver_max_iter=3),
    "leapfrog": LeapfrogIntegrator,
    "generalised_leapfrog": lambda: GeneralisedLeapfrogIntegrator(solver_max_iter=4),
}


def _run(integrator):
    if isinstance(integrator, GeneralisedLeapfrogIntegrator):
        state = {"x": X.clone(), "p": torch.ones_like(X)}
        out = integrator.integrate(
            state, 0.1, 3, force=lambda x, p, t: -x, velocity=lambda x, p, t: p
        )
        return torch.stack([out["x"], out["p"]])
    if isinstance(integrator, LeapfrogIntegrator):
        out = integrator.integrate(
            {"x": X.clone(), "p": torch.ones_like(X)}, 0.1, 3, drift=lambda x, t: -x
        )
        return torch.stack([out["x"], out["p"]])
    g = torch.Generator().manual_seed(0)
    kw = {"noise_scale": 0.3, "generator": g} if "SDE" in str(type(integrator).__mro__) else {}
    return integrator.integrate({"x": X.clone()}, 0.1, 3, drift=lambda x, t: -x, **kw)["x"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_089_pickle_becomes_the_integrator_it_was_made_from(name):
    assert_upgrade_matches(CASES[name](), _run)


def test_the_options_of_a_089_pickle_are_kept():
    upgraded = unpickle_089(CASES["dopri5_options"]())
    assert upgraded.norm is max_norm
    assert (upgraded.atol, upgraded.rtol, upgraded.max_steps) == (1e-5, 1e-4, 500)


class _AttrMidpoint(BaseRungeKuttaIntegrator):
    tableau_a = ((), (0.5,))
    tableau_b = (0.0, 1.0)
    tableau_c = (0.0, 0.5)


def _property_midpoint():
    class PropertyMidpoint(BaseRungeKuttaIntegrator):  # written for torchebm 0.8.9
        @property
        def tableau_a(self):
            return ((), (0.5,))

        @property
        def tableau_b(self):
            return (0.0, 1.0)

        @property
        def tableau_c(self):
            return (0.0, 0.5)

    return PropertyMidpoint


def test_a_tableau_given_as_properties_works_with_one_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="tableau_a, tableau_b, tableau_c as properties"):
        cls = _property_midpoint()
    assert cls.tableau_b == (0.0, 1.0)  # now the class attribute the property returned
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = cls().integrate({"x": X.clone()}, 0.1, 2, drift=lambda x, t: -x)["x"]
    want = _AttrMidpoint().integrate({"x": X.clone()}, 0.1, 2, drift=lambda x, t: -x)["x"]
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # the midpoint rule on x' = -x multiplies by 1 - h + h^2/2 per step (0.8.9 gave 0.819025)
    torch.testing.assert_close(got, X * (1 - 0.1 + 0.1**2 / 2) ** 2, rtol=1e-6, atol=1e-7)


def test_a_tableau_property_that_needs_its_instance_is_named():
    with pytest.raises(TypeError, match="Scaled.tableau_b is a property that needs an instance"):

        class Scaled(BaseRungeKuttaIntegrator):
            tableau_a = ((),)
            tableau_c = (0.0,)

            @property
            def tableau_b(self):
                return (self.weight,)


@pytest.mark.parametrize(
    "cls,args",
    [
        (HeunIntegrator, (0.02, 50)),  # consistent with the grid
        (RK4Integrator, (0.5, 7)),  # both contradict the grid: 0.8.9 ignored them too
        (MidpointIntegrator, (0.02, None)),
        (Dopri5Integrator, (0.1, 100)),  # the adaptive path: n_steps means nothing on a grid
    ],
)
def test_0_8_9_calls_with_step_size_and_n_steps_beside_a_grid_use_the_grid(cls, args):
    # 0.8.9 required step_size and n_steps positionally and ignored them when t was given;
    # this version raised a ConfigurationError for such calls (0.8.9 code stopped working)
    grid = torch.linspace(0.0, 1.0, 51, dtype=torch.float64)
    state = {"x": torch.ones(4, 2, dtype=torch.float64)}
    f = lambda x, t: -x  # noqa: E731
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        got = cls().integrate(state, *args, drift=f, t=grid)["x"]
    first_step = args[0] if cls is Dopri5Integrator else None  # the adaptive path's first step
    want = cls().integrate(state, first_step, drift=f, t=grid)["x"]
    assert torch.equal(got, want)
    torch.testing.assert_close(got, torch.full_like(got, torch.e**-1), rtol=1e-3, atol=0)


def test_a_step_size_or_n_steps_ignored_beside_a_grid_warns():
    # both were a ConfigurationError in earlier builds of this version (0.8.9 ignored them)
    grid = torch.linspace(0.0, 1.0, 11)
    with pytest.warns(DeprecationWarning, match="step_size=0.5 ignored: on a time grid t"):
        BackwardEulerMaruyamaIntegrator().integrate(
            {"x": torch.ones(2, 1)}, 0.5, None, drift=lambda x, t: -x, t=grid,
            diffusion=0.0,
        )  # fmt: skip
    with pytest.warns(DeprecationWarning, match="n_steps=7 ignored: on a time grid t of 11"):
        HeunIntegrator().integrate({"x": torch.ones(2, 1)}, None, 7, drift=lambda x, t: -x, t=grid)


def test_a_second_different_ignored_argument_warns_too():
    # one once-per-process key covered n_steps and step_size: after an ignored n_steps, an
    # ignored step_size (another mistake) passed in silence
    from torchebm.core._module import _WARNED

    for key in [k for k in _WARNED if "RK4Integrator.integrate.unused_grid_steps" in k]:
        _WARNED.discard(key)
    grid, f = torch.linspace(0.0, 1.0, 11), (lambda x, t: -x)
    with pytest.warns(DeprecationWarning, match="n_steps=100 ignored"):
        RK4Integrator().integrate({"x": torch.ones(2, 1)}, None, 100, drift=f, t=grid)
    with pytest.warns(DeprecationWarning, match="step_size=0.5 ignored"):
        RK4Integrator().integrate({"x": torch.ones(2, 1)}, 0.5, drift=f, t=grid)


def test_the_ignored_argument_warning_is_once_per_name_not_per_value():
    # the key held the values: a loop passing another step size each call warned each time
    from torchebm.core._module import _WARNED

    for key in [k for k in _WARNED if "HeunIntegrator.integrate.unused_grid_steps" in k]:
        _WARNED.discard(key)
    grid, f = torch.linspace(0.0, 1.0, 11), (lambda x, t: -x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for h in (0.1, 0.2, 0.3):
            HeunIntegrator().integrate({"x": torch.ones(2, 1)}, h, drift=f, t=grid)
    assert len([w for w in caught if "ignored: on a time grid" in str(w.message)]) == 1
