"""The leapfrog's one API: a typed `LeapfrogResult` that still reads like the 0.8 dict."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from torchebm.core import BaseSymplecticIntegrator as CoreSymplectic
from torchebm.core.base_integrator import BaseSymplecticIntegrator as OldPathSymplectic
from torchebm.core.errors import ConfigurationError
from torchebm.integrators import (
    BaseSymplecticIntegrator,
    GeneralisedLeapfrogIntegrator,
    LeapfrogIntegrator,
    LeapfrogResult,
)

F64 = torch.float64


class Quartic:
    """$U = \\sum x^4/4 - x^2/2$: counts gradient and energy evaluations."""

    def __init__(self):
        self.gradients = 0
        self.energies = 0

    def gradient(self, x, t):
        self.gradients += 1
        return x**3 - x

    def energy(self, x, t):
        self.energies += 1
        return (0.25 * x**4 - 0.5 * x**2).sum(1)


def _state(b=6, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(b, d, dtype=F64, generator=g),
        "p": torch.randn(b, d, dtype=F64, generator=g),
    }


def _leapfrog_089(x, p, h, n, force, mass=1.0):
    """The torchebm 0.8.9 loop: two half kicks and two force evaluations per step."""
    for _ in range(n):
        p_half = p + 0.5 * h * force(x)
        x = x + h * p_half / mass
        p = p_half + 0.5 * h * force(x)
    return x, p


def test_symplectic_base_moved_to_flows_and_old_paths_resolve():
    assert CoreSymplectic is OldPathSymplectic is BaseSymplecticIntegrator
    assert BaseSymplecticIntegrator.__module__ == "torchebm.integrators._base_symplectic"
    assert issubclass(LeapfrogIntegrator, BaseSymplecticIntegrator)
    assert issubclass(GeneralisedLeapfrogIntegrator, BaseSymplecticIntegrator)


@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no_grad"])
@pytest.mark.parametrize("n", [1, 7])
def test_result_fields_and_evaluation_counts(grad, n):
    lf = LeapfrogIntegrator(dtype=F64)
    u = Quartic()
    state = _state()
    with torch.set_grad_enabled(grad):
        out = lf.integrate(state, 0.05, n, gradient=u.gradient, energy=u.energy)
    assert isinstance(out, LeapfrogResult)
    assert u.gradients == lf.nfe == n + 1 and u.energies == 1  # energy: once, at the end
    assert torch.equal(out.gradient, out.x**3 - out.x)  # the gradient AT the returned x
    assert torch.equal(out.energy, (0.25 * out.x**4 - 0.5 * out.x**2).sum(1))
    # continuing from the end point: L evaluations, none at the start
    with torch.set_grad_enabled(grad):
        nxt = lf.integrate(out, 0.05, n, gradient=u.gradient, initial_gradient=out.gradient)
    assert u.gradients == 2 * n + 1 and lf.nfe == n
    assert nxt.energy is None and sorted(nxt) == ["gradient", "p", "x"]


def test_result_reads_like_the_dict_of_torchebm_089():
    lf = LeapfrogIntegrator(dtype=F64)
    state = _state(seed=1)
    out = lf.integrate(state, 0.1, 5, drift=lambda x, t: -x)  # the 0.8.9 call
    assert out["x"] is out.x and out["p"] is out.p and "x" in out and "p" in out
    assert sorted(out) == ["gradient", "p", "x"] and len(out) == 3
    assert torch.equal(out["force"], -out.x) and torch.equal(out.get("force"), -out.gradient)
    assert "energy" not in out and out.get("energy") is None
    with pytest.raises(KeyError):
        out["energy"]
    assert set(dict(out)) == {"x", "p", "gradient"}
    out["p"] = -out["p"]  # 0.8.9 code reversed the momentum of the returned dict
    back = lf.integrate(out, 0.1, 5, drift=lambda x, t: -x)
    torch.testing.assert_close(back["x"], state["x"], rtol=0, atol=1e-12)


def test_result_takes_the_dict_methods_that_089_code_calls():
    # 0.8.9 returned a plain dict: code copied it, added keys, updated and popped them
    lf = LeapfrogIntegrator(dtype=F64)
    out = lf.integrate(_state(seed=1), 0.1, 5, drift=lambda x, t: -x)
    copied = out.copy()
    assert type(copied) is dict and set(copied) == {"x", "p", "gradient"}
    assert copied["x"] is out.x
    out["t"] = 0.5  # a key beside the fields
    out.update(step=3)
    assert out["t"] == 0.5 and out.pop("step") == 3 and "step" not in out
    assert out.setdefault("t", 1.0) == 0.5 and out.setdefault("u", 2.0) == 2.0
    assert sorted(out) == ["gradient", "p", "t", "u", "x"] and {**out}["u"] == 2.0
    assert torch.equal(out.pop("gradient"), out.x)  # grad U = x for the drift -x
    assert out.gradient is None and "gradient" not in out
    with pytest.raises(KeyError, match="keeps 'x'"):
        out.pop("x")
    assert out["x"] is out.x  # still there
    with pytest.raises(KeyError):
        out.pop("missing")
    assert out.pop("missing", None) is None
    back = lf.integrate(out, 0.1, 5, drift=lambda x, t: -x)  # extra keys are ignored
    assert set(back) == {"x", "p", "gradient"}
    shallow = copy.copy(back)  # a copy's keys are its own, as a dict copy's
    shallow["v"] = 1.0
    assert "v" not in back
    back.clear()  # x and p stay; the rest goes
    assert sorted(back) == ["p", "x"] and back.gradient is None
    with pytest.raises(KeyError, match="attribute"):
        back["converged"] = torch.ones(2, dtype=torch.bool)


def test_result_built_with_a_field_name_in_extra_sets_the_field():
    x, p, y = torch.zeros(2, 1), torch.ones(2, 1), torch.full((2, 1), 5.0)
    mine = {"gradient": y, "t": 0.5}
    r = LeapfrogResult(x, p, extra=mine)
    assert r.gradient is y and r["gradient"] is y and len(r) == 4
    assert list(r) == ["x", "p", "gradient", "t"] and "gradient" not in r.extra
    r["u"] = 1
    assert "u" not in mine  # the caller's dict is not the result's
    with pytest.raises(ConfigurationError, match="'p' twice"):  # no silent precedence
        LeapfrogResult(x, p, extra={"p": y})
    assert list(LeapfrogResult(x, p, extra=None)) == ["x", "p"]


def test_result_popitem_union_and_membership_as_a_dict():
    x, p = torch.zeros(2, 1), torch.ones(2, 1)
    r = LeapfrogResult(x, p, gradient=x + 1, extra={"t": 0.5})
    assert "force" not in r and torch.equal(r["force"], -(x + 1))  # computed, not listed
    merged = r | {"t": 1.0, "s": 2}
    assert type(merged) is dict and merged["t"] == 1.0 and merged["x"] is x
    assert ({"t": 3.0} | r)["t"] == 0.5  # the right operand wins, as for dicts
    r |= {"s": 2}
    assert r["s"] == 2
    assert r.popitem() == ("s", 2) and r.popitem() == ("t", 0.5)
    key, value = r.popitem()
    assert key == "gradient" and torch.equal(value, x + 1)
    with pytest.raises(KeyError, match="keeps 'x' and 'p'"):
        r.popitem()
    assert list(r) == ["x", "p"]


@pytest.mark.parametrize("mass", [1.0, 2.5])
def test_same_trajectory_as_the_089_loop(mass):
    """Merged half kicks are the same scheme as 0.8.9's two half kicks (up to rounding)."""
    state = _state(seed=2)
    x, p = _leapfrog_089(state["x"], state["p"], 0.02, 50, lambda z: z - z**3, mass)
    out = LeapfrogIntegrator(dtype=F64).integrate(
        state, 0.02, 50, mass, drift=lambda z, t: z - z**3
    )
    torch.testing.assert_close(out.x, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.p, p, rtol=0, atol=1e-12)


def test_harmonic_closed_form_in_both_forms():
    # U = |x|^2 / 2 from x = 1, p = 0: x(T) = cos T, p(T) = -sin T, leapfrog error O(h^2)
    x0, p0 = torch.ones(2, 2, dtype=F64), torch.zeros(2, 2, dtype=F64)
    lf = LeapfrogIntegrator(dtype=F64)
    n, big_t = 1000, 1.0
    a = lf.integrate({"x": x0, "p": p0}, big_t / n, n, gradient=lambda x, t: x)
    b = lf.integrate({"x": x0, "p": p0}, big_t / n, n, drift=lambda x, t: -x)
    assert torch.equal(a.x, b.x) and torch.equal(a.p, b.p) and torch.equal(a.gradient, b.gradient)
    assert (a.x - math.cos(big_t)).abs().max() < 1e-6
    assert (a.p + math.sin(big_t)).abs().max() < 1e-6


def test_energy_callback_is_validated():
    with pytest.raises(TypeError, match="energy must be callable"):
        LeapfrogIntegrator().integrate(_state(), 0.1, 2, gradient=lambda x, t: x, energy=3)


def test_generalised_leapfrog_returns_the_typed_result_without_gradient():
    gl = GeneralisedLeapfrogIntegrator(dtype=F64, solver_max_iter=2)
    out = gl.integrate(_state(), 0.1, 3, force=lambda x, p, t: -x, velocity=lambda x, p, t: p)
    assert isinstance(out, LeapfrogResult) and out.gradient is None and out.energy is None
    assert sorted(out) == ["p", "x"]
    with pytest.raises(KeyError):
        out["force"]
