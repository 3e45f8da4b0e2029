"""The fixed-grid loop outside autograd (in-place state, one noise buffer) is bit-identical.

Under ``torch.no_grad()`` the fixed-step loop updates its own state in place and draws
the SDE noise into one reused buffer. These tests pin that this changes no bit: the
result equals a hand-written loop doing the same additions in the same order, and equals
the grad-enabled path (fresh tensors every step); the caller's ``x`` is never written;
and a drift that returns its input (aliasing the state) still gives the exact result.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.integrators import (
    EulerMaruyamaIntegrator,
    HeunIntegrator,
    MidpointIntegrator,
    RK4Integrator,
)
from torchebm.integrators._checked import checked_inputs

A = torch.tensor([[-0.1, -1.0], [1.0, -0.1]]).T.contiguous()


def rotation(x, t):
    return x @ A


def _x0() -> torch.Tensor:
    return torch.randn(64, 2, generator=torch.Generator().manual_seed(0))


def _hand_rk4(x, h, n):
    x = x.clone()
    for _ in range(n):
        k1 = rotation(x, None)
        k2 = rotation(torch.add(x, k1, alpha=0.5 * h), None)
        k3 = rotation(torch.add(x, k2, alpha=0.5 * h), None)
        k4 = rotation(torch.add(x, k3, alpha=h), None)
        x.add_(k1, alpha=h / 6).add_(k2, alpha=h / 3).add_(k3, alpha=h / 3).add_(k4, alpha=h / 6)
    return x


def _hand_em(x, h, n, sigma, gen):
    x, amp = x.clone(), sigma * math.sqrt(2 * h)
    for _ in range(n):
        x.add_(rotation(x, None), alpha=h).add_(torch.randn(x.shape, generator=gen), alpha=amp)
    return x


def test_rk4_no_grad_equals_hand_loop_and_grad_path():
    x0 = _x0()
    keep = x0.clone()
    with torch.no_grad():
        fast = RK4Integrator().integrate({"x": x0}, 0.01, 50, drift=rotation)["x"]
    slow = RK4Integrator().integrate({"x": x0}, 0.01, 50, drift=rotation)["x"]
    assert torch.equal(fast, _hand_rk4(x0, 0.01, 50))
    assert torch.equal(fast, slow)
    assert torch.equal(x0, keep)  # the caller's state is never written


@pytest.mark.parametrize("diffusion", [None, 0.3, "tensor", "callable"])
def test_euler_maruyama_no_grad_equals_grad_path(diffusion):
    x0 = _x0()
    keep = x0.clone()
    kw: dict = {"noise_scale": 0.5}
    if diffusion == "tensor":
        kw = {"diffusion": torch.full((64,), 0.2)}
    elif diffusion == "callable":
        kw = {"diffusion": lambda x, t: 0.1 + x.square()}
    elif diffusion is not None:
        kw = {"diffusion": diffusion}

    def run():
        gen = torch.Generator().manual_seed(3)
        return EulerMaruyamaIntegrator().integrate(
            {"x": x0}, 0.01, 40, drift=rotation, generator=gen, **kw
        )["x"]

    with torch.no_grad():
        fast = run()
    assert torch.equal(fast, run())
    assert torch.equal(x0, keep)


def test_euler_maruyama_no_grad_equals_hand_loop():
    x0 = _x0()
    with torch.no_grad():
        fast = EulerMaruyamaIntegrator().integrate(
            {"x": x0},
            0.01,
            40,
            drift=rotation,
            noise_scale=0.5,
            generator=torch.Generator().manual_seed(5),
        )["x"]
    assert torch.equal(fast, _hand_em(x0, 0.01, 40, 0.5, torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("cls", [EulerMaruyamaIntegrator, HeunIntegrator, MidpointIntegrator])
def test_aliasing_drift_gives_the_exact_result(cls):
    """``drift(x, t) = x`` returns the state itself: the loop must not update it in place
    under the stage that reads it; no-grad and grad paths agree bit for bit."""
    x0 = _x0()

    def identity(x, t):
        return x

    with torch.no_grad():
        fast = cls().integrate({"x": x0}, 0.01, 30, drift=identity)["x"]
    slow = cls().integrate({"x": x0}, 0.01, 30, drift=identity)["x"]
    assert torch.equal(fast, slow)
    # x' = x (1 + h) per Euler step; Heun and midpoint: x (1 + h + h^2 / 2)
    growth = 1.01 if cls is EulerMaruyamaIntegrator else 1.0 + 0.01 + 0.5e-4
    torch.testing.assert_close(fast, x0 * growth**30, rtol=1e-5, atol=0)


def test_float64_drift_on_float32_state_keeps_type_promotion():
    """A drift returning another dtype is a named `TypeError` in a user's call; under
    `checked_inputs` (a sampler's loop, no field checks) it promotes the state on both
    paths alike (no in-place cast into the float32 state)."""
    x0 = _x0()

    def drift64(x, t):
        return (x.to(A.dtype) @ A).double()

    with pytest.raises(TypeError, match="drift returned dtype torch.float64"):
        RK4Integrator().integrate({"x": x0}, 0.01, 5, drift=drift64)
    with checked_inputs():
        with torch.no_grad():
            fast = RK4Integrator().integrate({"x": x0}, 0.01, 5, drift=drift64)["x"]
        slow = RK4Integrator().integrate({"x": x0}, 0.01, 5, drift=drift64)["x"]
    assert fast.dtype == slow.dtype == torch.float64
    assert torch.equal(fast, slow)


def test_a_float16_state_and_a_steep_tableau_do_not_overflow():
    # a sum of the stages as k_0 + sum (a_j / a_0) k_j before scaling (tried, to round x once
    # per step) overflowed a float16 state at |k| ~ 1e4 and a tableau with b_0 = 1e-30: guard
    from torchebm.integrators import BaseRungeKuttaIntegrator, RK4Integrator

    x = torch.zeros(2, 1, dtype=torch.float16)
    out = RK4Integrator().integrate({"x": x}, 1e-3, 1, drift=lambda x, t: torch.full_like(x, 2e4))
    assert float(out["x"][0, 0]) == 20.0

    class Steep(BaseRungeKuttaIntegrator):
        tableau_a = ((), (1.0,))
        tableau_b = (1e-30, 1.0)
        tableau_c = (0.0, 1.0)

    one = torch.ones(3, 1)
    out = Steep().integrate({"x": one}, 1e-9, 1, drift=lambda x, t: torch.full_like(x, 1e9))
    assert torch.allclose(out["x"], torch.full_like(one, 2.0))
