"""Leapfrog: masses broadcast against the event shape, and reuse of the gradient (force) at x."""

import pytest
import torch

from torchebm.core.errors import ShapeError
from torchebm.integrators import LeapfrogIntegrator, LeapfrogResult

F64 = torch.float64


class CountingDrift:
    """``-grad U`` of the quartic well ``U = sum(x^4)/4 - sum(x^2)/2``, counting calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        return x - x**3


def _state(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(shape, dtype=F64, generator=g),
        "p": torch.randn(shape, dtype=F64, generator=g),
    }


def _kinetic_energy(p, mass):
    return 0.5 * (p.square() / mass).flatten(1).sum(1)


def _harmonic_energy(out, mass):
    return 0.5 * out["x"].square().flatten(1).sum(1) + _kinetic_energy(out["p"], mass)


# ------------------------------------------------------------------------------ mass
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no_grad"])
def test_channel_mass_matches_expanded_mass(grad):
    state = _state((3, 2, 4, 4))
    mass = torch.tensor([0.5, 3.0], dtype=F64).reshape(2, 1, 1)  # (C, 1, 1)
    lf = LeapfrogIntegrator(dtype=F64)
    with torch.set_grad_enabled(grad):
        out = lf.integrate(state, 0.05, 40, mass, drift=lambda x, t: -x)
        full = lf.integrate(state, 0.05, 40, mass.expand(2, 4, 4), drift=lambda x, t: -x)
        batch = lf.integrate(state, 0.05, 40, mass.expand(3, 2, 4, 4), drift=lambda x, t: -x)
    for ref in (full, batch):
        assert torch.equal(out["x"], ref["x"]) and torch.equal(out["p"], ref["p"])
    # the per-channel mass acts as a mass: the harmonic energy with the same masses is kept
    h0, h1 = _harmonic_energy(state, mass), _harmonic_energy(out, mass)
    assert torch.allclose(h0, h1, rtol=2e-3)


def test_channel_mass_follows_closed_form_per_channel():
    # x'' = -x / m per channel: x(T) = x0 cos(T / sqrt(m)) + p0 sqrt(m) sin(T / sqrt(m)) / m
    state = _state((4, 2, 3, 3), seed=1)
    m = torch.tensor([0.5, 2.0], dtype=F64).reshape(2, 1, 1)
    n, big_t = 2000, 2.0
    out = LeapfrogIntegrator(dtype=F64).integrate(state, big_t / n, n, m, drift=lambda x, t: -x)
    w = m.rsqrt()
    exact = state["x"] * torch.cos(w * big_t) + state["p"] / m * torch.sin(w * big_t) / w
    assert (out["x"] - exact).abs().max() < 1e-5


def test_mass_shapes_accepted_and_rejected():
    lf = LeapfrogIntegrator(dtype=F64)
    state = _state((5, 3))
    drift = CountingDrift()
    ref = lf.integrate(state, 0.1, 5, torch.full((3,), 2.0, dtype=F64), drift=drift)
    for mass in (torch.full((5, 1), 2.0), torch.full((1, 3), 2.0), torch.full((5, 3), 2.0)):
        out = lf.integrate(state, 0.1, 5, mass, drift=drift)
        assert torch.equal(out["x"], ref["x"])
    for bad in (torch.ones(2), torch.ones(4, 3), torch.ones(2, 5, 3)):
        with pytest.raises(ShapeError, match=r"mass must be .* broadcastable to the shape of x"):
            lf.integrate(state, 0.1, 5, bad, drift=drift)


# ------------------------------------------------------------------------------ force
@pytest.mark.parametrize(
    "grad,safe,n", [(True, False, 7), (False, False, 7), (True, True, 7), (False, False, 1)]
)
def test_initial_force_is_bit_identical_and_saves_one_call(grad, safe, n):
    state = _state((6, 2, 3))
    mass = torch.tensor([1.0, 2.0, 0.5], dtype=F64)
    lf = LeapfrogIntegrator(dtype=F64)
    plain, reuse = CountingDrift(), CountingDrift()
    with torch.set_grad_enabled(grad):
        ref = lf.integrate(state, 0.05, n, mass, drift=plain, safe=safe)
        assert plain.calls == lf.nfe == n + 1
        f0 = state["x"] - state["x"] ** 3
        f0_copy = f0.clone()
        out = lf.integrate(state, 0.05, n, mass, drift=reuse, safe=safe, initial_force=f0)
        assert reuse.calls == lf.nfe == n
    assert torch.equal(out["x"], ref["x"]) and torch.equal(out["p"], ref["p"])
    assert torch.equal(out["force"], ref["force"])
    assert torch.equal(f0, f0_copy)  # the caller's force is not modified
    # the returned force is the drift at the returned position
    assert torch.equal(ref["force"], ref["x"] - ref["x"] ** 3)


def test_step_takes_and_returns_the_force():
    state = _state((4, 2))
    lf = LeapfrogIntegrator(dtype=F64)
    drift = CountingDrift()
    first = lf.step(state, 0.1, drift=drift)
    assert drift.calls == 2
    second = lf.step(first, 0.1, drift=drift, initial_force=first["force"])
    assert drift.calls == 3
    both = lf.integrate(state, 0.1, 2, drift=CountingDrift())
    # one call merges the half kicks between its steps: equal up to rounding
    torch.testing.assert_close(second["x"], both["x"], rtol=0, atol=1e-14)
    torch.testing.assert_close(second["p"], both["p"], rtol=0, atol=1e-14)


def test_chained_trajectories_with_reused_force_equal_one_long_trajectory():
    state = _state((8, 2), seed=3)
    lf = LeapfrogIntegrator(dtype=F64)
    drift = CountingDrift()
    long = lf.integrate(state, 0.02, 60, drift=drift)
    drift.calls = 0
    out = state
    for _ in range(3):
        out = lf.integrate(out, 0.02, 20, drift=drift, initial_force=out.get("force"))
    assert drift.calls == 61  # one evaluation at the start, then one per step
    # the long call merges the half kicks at the joins: equal up to rounding
    assert torch.allclose(out["x"], long["x"], rtol=0, atol=1e-12)
    assert torch.allclose(out["p"], long["p"], rtol=0, atol=1e-12)
    # outside autograd (in place) the same holds
    with torch.no_grad():
        out = state
        for _ in range(3):
            out = lf.integrate(out, 0.02, 20, drift=drift, initial_force=out.get("force"))
    assert torch.allclose(out["x"], long["x"], rtol=0, atol=1e-12)


def test_initial_force_validation():
    lf = LeapfrogIntegrator(dtype=F64)
    state = _state((4, 2))
    with pytest.raises(ShapeError, match=r"initial_force must have the shape of x \(4, 2\)"):
        lf.integrate(state, 0.1, 3, drift=CountingDrift(), initial_force=torch.zeros(4))
    with pytest.raises(TypeError, match="initial_force must be None or a tensor, got list"):
        lf.integrate(state, 0.1, 3, drift=CountingDrift(), initial_force=[0.0])


# ------------------------------------------------------------------------------ gradient form
@pytest.mark.parametrize("mass", [None, 2.0, torch.tensor([1.0, 3.0], dtype=F64)])
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no_grad"])
@pytest.mark.parametrize("safe", [False, True])
def test_gradient_form_equals_the_force_form(mass, grad, safe):
    """``gradient=grad U`` kicks with ``-h`` instead of negating: bit-identical trajectories."""
    lf = LeapfrogIntegrator()
    state = _state((6, 2))
    drift = CountingDrift()
    with torch.set_grad_enabled(grad):
        ref = lf.integrate(state, 0.05, 7, mass, drift=drift, safe=safe)
        calls = {"n": 0}

        def gradient(x, t):
            calls["n"] += 1
            return x**3 - x

        out = lf.integrate(state, 0.05, 7, mass, gradient=gradient, safe=safe)
    assert torch.equal(out["x"], ref["x"]) and torch.equal(out["p"], ref["p"])
    # one result type whatever the form: the gradient at the end point, the force = -gradient
    assert isinstance(out, LeapfrogResult) and isinstance(ref, LeapfrogResult)
    assert torch.equal(out.gradient, ref.gradient) and torch.equal(out["force"], ref["force"])
    assert torch.equal(out.gradient, -ref["force"])
    assert calls["n"] == drift.calls == 8
    with torch.set_grad_enabled(grad):  # the end-point gradient restarts the next trajectory
        nxt = lf.integrate(out, 0.05, 7, mass, gradient=gradient, initial_gradient=out["gradient"])
    assert calls["n"] == 15
    assert torch.isfinite(nxt["x"]).all()
    assert torch.equal(state["x"], _state((6, 2))["x"])  # inputs never mutated


def test_gradient_form_validation():
    lf = LeapfrogIntegrator()
    state = _state((3, 2))
    with pytest.raises(ValueError, match="not both"):
        lf.integrate(state, 0.1, 2, drift=lambda x, t: -x, gradient=lambda x, t: x)
    with pytest.raises(ValueError, match="initial_gradient or initial_force, not both"):
        lf.integrate(
            state,
            0.1,
            2,
            drift=lambda x, t: -x,
            initial_gradient=state["x"],
            initial_force=state["x"],
        )
    with pytest.raises(ShapeError, match="initial_gradient"):
        lf.integrate(state, 0.1, 2, gradient=lambda x, t: x, initial_gradient=torch.ones(2))


def test_initial_value_in_the_other_form_is_converted():
    """`initial_gradient` with the 0.8 `drift=` form (and `initial_force` with `gradient=`)."""
    lf = LeapfrogIntegrator(dtype=F64)
    state = _state((5, 2), seed=4)
    g0 = state["x"] ** 3 - state["x"]
    ref = lf.integrate(state, 0.05, 6, drift=CountingDrift())
    drift = CountingDrift()
    a = lf.integrate(state, 0.05, 6, drift=drift, initial_gradient=g0)
    b = lf.integrate(state, 0.05, 6, gradient=lambda x, t: x**3 - x, initial_force=-g0)
    assert drift.calls == 6 and lf.nfe == 6
    for out in (a, b):
        assert torch.equal(out.x, ref.x) and torch.equal(out.p, ref.p)
