"""Gradients of an adaptive solve in the end times of its grid, against the closed form of
dx/dt = -x + t: x(T) = T - 1 + (x0 - t0 + 1) exp(-(T - t0))."""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.integrators import AdaptiveHeunIntegrator, Bosh3Integrator, Dopri5Integrator

F64 = torch.float64


def _field(x, t):
    return -x + t[:, None]


@pytest.mark.parametrize(
    "cls,tol", [(Dopri5Integrator, 1e-10), (Bosh3Integrator, 1e-10), (AdaptiveHeunIntegrator, 1e-7)]
)
def test_end_times_of_the_grid_get_their_exact_gradients(cls, tol):
    # the adaptive loop steps between Python floats: t[0].grad and t[-1].grad stayed None
    # (and autograd.grad raised "does not require grad" when only t did)
    t0 = torch.tensor(0.2, dtype=F64, requires_grad=True)
    t1 = torch.tensor(1.3, dtype=F64, requires_grad=True)
    x0 = torch.tensor([[1.0], [-0.5]], dtype=F64)
    solver = cls(atol=tol, rtol=tol)
    close = dict(rtol=1e3 * tol, atol=1e3 * tol)  # the solve's error, not the gradient's
    y = solver.integrate({"x": x0}, drift=_field, t=torch.stack([t0, t1]))["x"]
    y.sum().backward()
    decay = math.exp(-(1.3 - 0.2))
    c = x0.flatten() - 0.2 + 1
    exact_y = 1.3 - 1 + c * decay
    torch.testing.assert_close(y.flatten(), exact_y, **close)
    torch.testing.assert_close(t1.grad, (1 - c * decay).sum(), **close)
    torch.testing.assert_close(t0.grad, ((c - 1) * decay).sum(), **close)
    plain = solver.integrate({"x": x0}, drift=_field, t=torch.tensor([0.2, 1.3], dtype=F64))
    assert torch.equal(plain["x"], y.detach())  # the value is the solve's own
