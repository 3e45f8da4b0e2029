"""Integrators check the shape of what a field returns, and that ``n_steps`` is an int.

Before the fix a drift returning ``(B, 1)`` for a ``(B, D)`` state broadcast silently into a
wrong update (RK, SDE and leapfrog alike), a ``(B,)`` one failed with torch's broadcasting
error, and ``n_steps=3.0`` was reported as "n_steps must be positive, got 3.0".
"""

from __future__ import annotations

import pytest
import torch
from _support.host_reads import count_host_reads

from torchebm.core.errors import ShapeError
from torchebm.integrators import (
    EulerMaruyamaIntegrator,
    GeneralisedLeapfrogIntegrator,
    LeapfrogIntegrator,
    get_integrator,
)
from torchebm.integrators._checked import checked_inputs

RK = ["euler", "heun", "midpoint", "rk4", "dopri5", "bosh3", "euler_maruyama"]
X = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
P = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
BAD = {
    "(B, 1)": (lambda x, *_: -x[:, :1], r"\(4, 1\)"),
    "(B,)": (lambda x, *_: -x.sum(1), r"\(4,\)"),
    "float": (lambda x, *_: 0.0, "float"),
}


def _expect(field_name, got):
    return rf"{field_name} must return a tensor shaped like the state x \(4, 2\), got {got}"


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("name", RK)
def test_runge_kutta_drift_of_another_shape_is_named(name, bad):
    fn, got = BAD[bad]
    integ = get_integrator(name)
    with pytest.raises(ShapeError, match=_expect("drift", got)):
        integ.integrate({"x": X}, 0.1, 3, drift=fn)
    with pytest.raises(ShapeError, match=_expect("drift", got)):
        integ.step({"x": X}, 0.1, drift=fn)


def test_sde_drift_of_another_shape_is_named_with_noise():
    fn, got = BAD["(B, 1)"]
    with pytest.raises(ShapeError, match=_expect("drift", got)):
        EulerMaruyamaIntegrator().integrate({"x": X}, 0.1, 3, drift=fn, noise_scale=1.0)


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("kind", ["drift", "gradient"])
def test_leapfrog_field_of_another_shape_is_named(kind, bad):
    fn, got = BAD[bad]
    with pytest.raises(ShapeError, match=_expect(kind, got)):
        LeapfrogIntegrator().integrate({"x": X, "p": P}, 0.1, 3, **{kind: fn})


def test_generalised_leapfrog_callbacks_of_another_shape_are_named():
    fn, got = BAD["(B, 1)"]
    gl = GeneralisedLeapfrogIntegrator()
    with pytest.raises(ShapeError, match=_expect("force", got)):
        gl.integrate(
            {"x": X, "p": P}, 0.1, 2, force=lambda x, p, t: fn(x), velocity=lambda x, p, t: p
        )
    with pytest.raises(ShapeError, match=_expect("velocity", got)):
        gl.integrate(
            {"x": X, "p": P}, 0.1, 2, force=lambda x, p, t: -x, velocity=lambda x, p, t: fn(p)
        )


def test_the_check_reads_nothing_back_and_is_off_under_checked_inputs(monkeypatch):
    # a comparison of sizes: the host reads of a fixed-grid call do not grow with its steps
    calls = count_host_reads(monkeypatch)
    reads = []
    for n in (2, 20):
        calls["n"] = 0
        get_integrator("rk4").integrate({"x": X}, 0.1, n, drift=lambda x, t: -x)
        reads.append(calls["n"])
    assert reads[0] == reads[1], reads
    # a sampler's loop (checked_inputs) calls the field it built, unwrapped
    seen = []

    def drift(x, t):
        seen.append(x.shape)
        return -x

    with checked_inputs():
        out = get_integrator("euler").integrate({"x": X}, 0.1, 2, drift=drift)["x"]
    torch.testing.assert_close(out, X * 0.9**2)
    assert seen == [X.shape, X.shape]


@pytest.mark.parametrize("n_steps", [3.0, "3", True])
def test_n_steps_must_be_an_int(n_steps):
    msg = rf"n_steps must be an int, got {n_steps!r}"
    with pytest.raises(TypeError, match=msg):
        get_integrator("rk4").integrate({"x": X}, 0.1, n_steps, drift=lambda x, t: -x)
    with pytest.raises(TypeError, match=msg):
        LeapfrogIntegrator().integrate({"x": X, "p": P}, 0.1, n_steps, drift=lambda x, t: -x)


# ----------------------------------------------------------------------------- dtypes
# A field of another dtype than the state promoted a float32 state to float64 (or ran a
# float64 state at float32 accuracy, 6e-10 off) without a word; it is a named TypeError now.
def _expect_dtype(field_name, got, state):
    return rf"{field_name} returned dtype {got} for a state x of dtype {state}"


@pytest.mark.parametrize("name", RK)
@pytest.mark.parametrize(
    "state,other", [(torch.float32, torch.float64), (torch.float64, torch.float32)]
)
def test_runge_kutta_drift_of_another_dtype_is_named(name, state, other):
    x = X.to(state)
    integ = get_integrator(name)
    with pytest.raises(TypeError, match=_expect_dtype("drift", other, state)):
        integ.integrate({"x": x}, 0.1, 3, drift=lambda x, t: -x.to(other))
    with pytest.raises(TypeError, match=_expect_dtype("drift", other, state)):
        integ.step({"x": x}, 0.1, drift=lambda x, t: -x.to(other))


def test_leapfrog_fields_of_another_dtype_are_named():
    f64 = torch.float64
    with pytest.raises(TypeError, match=_expect_dtype("gradient", f64, torch.float32)):
        LeapfrogIntegrator().integrate({"x": X, "p": P}, 0.1, 2, gradient=lambda x, t: x.to(f64))
    with pytest.raises(TypeError, match=_expect_dtype("force", f64, torch.float32)):
        GeneralisedLeapfrogIntegrator().integrate(
            {"x": X, "p": P}, 0.1, 2, force=lambda x, p, t: -x.to(f64), velocity=lambda x, p, t: p
        )


def test_a_half_precision_field_under_autocast_is_accepted():
    # autocast computes in bfloat16 by request: the float32 state stays float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = get_integrator("rk4").integrate(
            {"x": X}, 0.1, 3, drift=lambda x, t: -x.to(torch.bfloat16)
        )["x"]
    assert out.dtype == torch.float32
    torch.testing.assert_close(
        out, X * (1 - 0.1 + 0.1**2 / 2 - 0.1**3 / 6 + 0.1**4 / 24) ** 3, atol=2e-2, rtol=0
    )
