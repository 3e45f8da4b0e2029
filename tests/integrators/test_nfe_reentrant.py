"""`nfe` of the leapfrog and Runge-Kutta integrators when the integrator is called again
while a call runs (from the field, as a model's forward that samples would): each call
counts its own evaluations, and `nfe` is that of the call that returned last (the outer
one). Reference: the evaluations of each field, counted by the test itself."""

from __future__ import annotations

import pytest
import torch

from torchebm.integrators import LeapfrogIntegrator, get_integrator

F64 = torch.float64
RK_NAMES = ["euler", "heun", "midpoint", "rk4", "dopri5", "bosh3", "adaptive_heun"]


class Field:
    """``-rate * x``, counting its calls; at its second call it runs ``nested()`` and keeps
    what that returns in ``inner``."""

    def __init__(self, rate: float = 1.0, nested=None) -> None:
        self.rate, self.nested, self.calls, self.inner = rate, nested, 0, None

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 2 and self.nested is not None:
            self.inner = self.nested()
        return -self.rate * x


X = torch.ones(3, 2, dtype=F64)
GRID = torch.linspace(0.0, 1.0, 6, dtype=F64)


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("name", RK_NAMES)
def test_runge_kutta_nfe_is_the_outer_calls_after_a_nested_call(name, adaptive):
    integ = get_integrator(name)
    if adaptive and not integ.adaptive:
        pytest.skip("no error estimate")

    def nested() -> tuple[int, int]:  # another problem, on a longer grid: another count
        inner = Field(2.0)
        integ.integrate({"x": X[:1]}, 0.05, 17, drift=inner, adaptive=False)
        return integ.nfe, inner.calls

    outer = Field(nested=nested)
    integ.integrate({"x": X}, drift=outer, t=GRID, adaptive=adaptive)
    assert outer.inner[0] == outer.inner[1] > 0
    assert integ.nfe == outer.calls
    outer = Field(nested=nested)
    integ.step({"x": X}, 0.1, drift=outer)
    if outer.inner is not None:  # one-stage methods evaluate once per step
        assert integ.nfe == outer.calls


def test_euler_maruyama_nfe_is_the_outer_calls_after_a_nested_call():
    integ = get_integrator("euler_maruyama")
    gen = torch.Generator().manual_seed(0)

    def nested() -> int:
        integ.integrate({"x": X}, 0.01, 9, drift=Field(), noise_scale=1.0, generator=gen)
        return integ.nfe

    outer = Field(nested=nested)
    integ.integrate({"x": X}, 0.1, 4, drift=outer, noise_scale=1.0, generator=gen)
    assert outer.inner == 9 and integ.nfe == outer.calls == 4


def test_leapfrog_nfe_is_the_outer_calls_after_a_nested_call():
    lf = LeapfrogIntegrator()
    state = {"x": X, "p": torch.zeros_like(X)}

    def nested() -> int:
        lf.integrate(state, 0.1, 9, drift=Field())
        return lf.nfe

    outer = Field(nested=nested)
    lf.integrate(state, 0.1, 4, drift=outer)
    assert outer.inner == 10  # n_steps + the start
    assert lf.nfe == outer.calls == 5
