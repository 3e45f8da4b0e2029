"""Leapfrog and generalised leapfrog: energy conservation, reversibility, symplecticity."""

import math

import pytest
import torch

from torchebm.core import BaseSymplecticIntegrator
from torchebm.integrators import GeneralisedLeapfrogIntegrator, LeapfrogIntegrator

F64 = torch.float64


def harmonic_drift(x, t):
    return -x


def energy(x, p, mass=1.0):
    return 0.5 * (x.square() + p.square() / mass).sum(-1)


def test_leapfrog_conserves_energy_on_harmonic_oscillator():
    lf = LeapfrogIntegrator(dtype=F64)
    g = torch.Generator().manual_seed(0)
    x, p = torch.randn(64, 3, dtype=F64, generator=g), torch.randn(64, 3, dtype=F64, generator=g)
    h0 = energy(x, p)
    errs = []
    for h in (0.2, 0.1):
        out = lf.integrate({"x": x, "p": p}, h, int(100 / h), drift=harmonic_drift)
        errs.append((energy(out["x"], out["p"]) - h0).abs().max().item() / h0.max().item())
    # bounded O(h^2) energy error after 100 time units (no drift)
    assert errs[0] < 0.02 and errs[1] < 0.005
    assert 3.0 < errs[0] / errs[1] < 5.0


def test_leapfrog_second_order_trajectory():
    lf = LeapfrogIntegrator(dtype=F64)
    x, p = torch.ones(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64)
    errs = []
    for n in (20, 40, 80):
        out = lf.integrate({"x": x, "p": p}, 1.0 / n, n, drift=harmonic_drift)
        errs.append(abs(out["x"].item() - math.cos(1.0)))
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(r - 2) < 0.1 for r in rates)


def test_leapfrog_time_reversible_and_force_reuse():
    lf = LeapfrogIntegrator(dtype=F64)
    g = torch.Generator().manual_seed(1)
    x, p = torch.randn(8, 2, dtype=F64, generator=g), torch.randn(8, 2, dtype=F64, generator=g)

    def drift(x, t):
        return -4 * x**3 + x  # anharmonic double well

    out = lf.integrate({"x": x, "p": p}, 0.01, 300, drift=drift)
    assert lf.nfe == 301
    back = lf.integrate({"x": out["x"], "p": -out["p"]}, 0.01, 300, drift=drift)
    assert torch.allclose(back["x"], x, atol=1e-10) and torch.allclose(-back["p"], p, atol=1e-10)


def test_leapfrog_mass_and_inputs_not_mutated():
    lf = LeapfrogIntegrator(dtype=F64)
    x, p = torch.ones(2, 2, dtype=F64), torch.ones(2, 2, dtype=F64)
    xc, pc = x.clone(), p.clone()
    out_int = lf.integrate({"x": x, "p": p}, 0.1, 10, 2, drift=harmonic_drift)  # int mass works
    out_flt = lf.integrate({"x": x, "p": p}, 0.1, 10, 2.0, drift=harmonic_drift)
    out_ten = lf.integrate(
        {"x": x, "p": p}, 0.1, 10, torch.tensor([2.0, 2.0], dtype=F64), drift=harmonic_drift
    )
    assert torch.allclose(out_int["x"], out_flt["x"]) and torch.allclose(out_flt["x"], out_ten["x"])
    assert torch.equal(x, xc) and torch.equal(p, pc)
    # heavier particle: energy with the same mass is conserved
    e0, e1 = energy(x, p, 2.0), energy(out_flt["x"], out_flt["p"], 2.0)
    assert torch.allclose(e0, e1, rtol=1e-2)


def test_safe_mode_sanitises_nan_and_clamps():
    lf = LeapfrogIntegrator()
    x = torch.tensor([[1.0, float("nan")]])
    p = torch.zeros(1, 2)
    out = lf.step({"x": x, "p": p}, 0.1, drift=lambda x, t: -(x**3) * 1e12, safe=True)
    assert torch.isfinite(out["x"]).all() and torch.isfinite(out["p"]).all()
    assert out["p"].abs().max() <= 1e6


def test_generalised_leapfrog_reduces_to_leapfrog():
    g = torch.Generator().manual_seed(2)
    x, p = torch.randn(4, 3, dtype=F64, generator=g), torch.randn(4, 3, dtype=F64, generator=g)
    lf = LeapfrogIntegrator(dtype=F64).integrate({"x": x, "p": p}, 0.05, 40, drift=harmonic_drift)
    gl = GeneralisedLeapfrogIntegrator(dtype=F64, solver_max_iter=3).integrate(
        {"x": x, "p": p}, 0.05, 40, force=lambda x, p, t: -x, velocity=lambda x, p, t: p
    )
    assert torch.allclose(lf["x"], gl["x"], atol=1e-12) and torch.allclose(
        lf["p"], gl["p"], atol=1e-12
    )


def _nonsep():
    # H(x, p) = x^2/2 + (1 + x^2) p^2 / 2   (position-dependent mass)
    def H(x, p):
        return 0.5 * x.square().sum(-1) + 0.5 * ((1 + x.square()) * p.square()).sum(-1)

    def force(x, p, t):
        return -(x + x * p.square())

    def velocity(x, p, t):
        return (1 + x.square()) * p

    return H, force, velocity


def test_generalised_leapfrog_nonseparable_energy_and_reversibility():
    H, force, velocity = _nonsep()
    gl = GeneralisedLeapfrogIntegrator(
        dtype=F64, solver_max_iter=50, solver_tol=1e-14, solver_check_every=1
    )
    x, p = torch.tensor([[0.5, -0.3]], dtype=F64), torch.tensor([[0.4, 0.8]], dtype=F64)
    out = gl.integrate({"x": x, "p": p}, 0.01, 500, force=force, velocity=velocity)
    assert abs((H(out["x"], out["p"]) - H(x, p)).item()) < 1e-4
    back = gl.integrate({"x": out["x"], "p": -out["p"]}, 0.01, 500, force=force, velocity=velocity)
    assert torch.allclose(back["x"], x, atol=1e-9) and torch.allclose(-back["p"], p, atol=1e-9)
    assert gl.nfe < 500 * 102  # early exit used


def test_generalised_leapfrog_unit_jacobian():
    _, force, velocity = _nonsep()
    gl = GeneralisedLeapfrogIntegrator(dtype=F64, solver_max_iter=60)

    def flow(z):
        out = gl.step(
            {"x": z[:1].reshape(1, 1), "p": z[1:].reshape(1, 1)},
            0.1,
            force=force,
            velocity=velocity,
        )
        return torch.cat([out["x"].reshape(1), out["p"].reshape(1)])

    jac = torch.autograd.functional.jacobian(flow, torch.tensor([0.7, -0.4], dtype=F64))
    assert abs(torch.linalg.det(jac).item() - 1.0) < 1e-8


def test_validation():
    lf = LeapfrogIntegrator()
    st = {"x": torch.ones(2, 2), "p": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match="drift must be provided"):
        lf.integrate(st, 0.1, 3)
    with pytest.raises(ValueError, match="n_steps must be >= 1, got 0"):
        lf.integrate(st, 0.1, 0, drift=harmonic_drift)
    with pytest.raises(TypeError, match="'p'"):
        lf.step({"x": torch.ones(2, 2)}, 0.1, drift=harmonic_drift)
    with pytest.raises(ValueError, match="force must be provided"):
        GeneralisedLeapfrogIntegrator().step(st, 0.1, velocity=lambda x, p, t: p)
    with pytest.raises(ValueError, match="solver_max_iter"):
        GeneralisedLeapfrogIntegrator(solver_max_iter=0)
    assert LeapfrogIntegrator.separable and not GeneralisedLeapfrogIntegrator.separable
    assert issubclass(LeapfrogIntegrator, BaseSymplecticIntegrator)


# A tensor step size holding NaN/inf ran the whole trajectory into NaN (a float one was
# rejected): both leapfrogs reject it with the float path's error, one host read per call.
_BAD_STEPS = {
    "0-d nan": torch.tensor(float("nan")),
    "0-d inf": torch.tensor(float("inf")),
    "(B,) with a nan": torch.tensor([0.1, float("nan"), 0.1, 0.1]),
}


@pytest.mark.parametrize("bad", list(_BAD_STEPS))
def test_a_non_finite_tensor_step_size_is_rejected(bad):
    from torchebm.core.errors import ConfigurationError

    h = _BAD_STEPS[bad]
    st = {"x": torch.ones(4, 2), "p": torch.zeros(4, 2)}
    with pytest.raises(ConfigurationError, match="step_size must be finite, got"):
        LeapfrogIntegrator().integrate(st, h, 5, gradient=lambda x, t: x)
    with pytest.raises(ConfigurationError, match="step_size must be finite, got"):
        LeapfrogIntegrator().step(st, h, gradient=lambda x, t: x)
    with pytest.raises(ConfigurationError, match="step_size must be finite, got"):
        GeneralisedLeapfrogIntegrator().integrate(
            st, h, 5, force=lambda x, p, t: -x, velocity=lambda x, p, t: p
        )


def test_a_finite_tensor_step_size_is_read_once_per_call(monkeypatch):
    from _support.host_reads import count_host_reads

    st = {"x": torch.ones(4, 2), "p": torch.zeros(4, 2)}
    h = torch.tensor([0.1, 0.2, 0.1, 0.05])
    ref = LeapfrogIntegrator().integrate(st, h, 3, gradient=lambda x, t: x).x
    assert torch.isfinite(ref).all()
    calls = count_host_reads(monkeypatch)
    reads = []
    for n in (2, 20):
        calls["n"] = 0
        LeapfrogIntegrator().integrate(st, h, n, gradient=lambda x, t: x)
        reads.append(calls["n"])
    assert reads[0] == reads[1], reads
