"""Adaptive integration with ``atol=0`` (a pure relative tolerance, accepted: only both 0
is refused) on a state with a component that is exactly 0 and stays 0 under the drift.

That component has error 0 and scale ``rtol * max(|x|, |y|) = 0``; the error ratio was
0/0 = NaN, every step was rejected and the call raised "step size underflow" (given a first
step) or "maximum number of steps exceeded" (automatic first step). Reference: the closed
form ``x(1) = x(0) e^{-1}`` of ``x' = -x``.
"""

import math

import pytest
import torch

from torchebm.core.errors import NonFiniteError
from torchebm.integrators import (
    AdaptiveHeunIntegrator,
    Bosh3Integrator,
    Dopri5Integrator,
    Dopri8Integrator,
)

CLASSES = [AdaptiveHeunIntegrator, Bosh3Integrator, Dopri5Integrator, Dopri8Integrator]


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("first_step", [0.1, None])
def test_zero_component_with_atol_zero(cls, first_step):
    x0 = torch.tensor([[1.0, 0.0], [-2.0, 0.5]], dtype=torch.float64)
    rtol = 1e-6
    out = cls(atol=0.0, rtol=rtol).integrate(
        {"x": x0}, first_step, t=torch.tensor([0.0, 1.0]), drift=lambda x, t: -x
    )["x"]
    exact = x0 * math.exp(-1.0)
    assert out[0, 1].item() == 0.0  # 0 stays exactly 0
    # local tolerance rtol per step; the global error stays well inside 100 * rtol
    torch.testing.assert_close(out, exact, rtol=100 * rtol, atol=0.0)


def test_nan_drift_still_reported():
    # the 0/0 = 0 rule must not hide a NaN error (NaN != 0)
    drift = lambda x, t: torch.full_like(x, float("nan"))  # noqa: E731
    with pytest.raises(NonFiniteError, match="NaN or inf"):
        Dopri5Integrator(atol=0.0, rtol=1e-3).integrate(
            {"x": torch.ones(2, 2)}, 0.1, t=torch.tensor([0.0, 1.0]), drift=drift
        )


@pytest.mark.parametrize("cls", CLASSES)
def test_automatic_first_step_from_a_zero_component_that_moves(cls):
    # x' = -x + (0, 1) from (1, 0): the second component starts at 0 with drift 1, so the
    # Hairer-Norsett-Wanner estimate |f0| / (rtol |x0|) is infinite there with atol=0 (it
    # divided by a zero first step: ZeroDivisionError). Closed form (e^-1, 1 - e^-1).
    x0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    c = torch.tensor([0.0, 1.0], dtype=torch.float64)
    rtol = 1e-6
    out = cls(atol=0.0, rtol=rtol).integrate(
        {"x": x0}, None, t=torch.tensor([0.0, 1.0]), drift=lambda x, t: c - x
    )["x"]
    exact = torch.tensor([[math.exp(-1.0), 1.0 - math.exp(-1.0)]], dtype=torch.float64)
    torch.testing.assert_close(out, exact, rtol=100 * rtol, atol=0.0)
