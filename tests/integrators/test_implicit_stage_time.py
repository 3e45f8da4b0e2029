"""The drift-implicit Euler-Maruyama step evaluates the drift at the end of the step:
$x' = x + \\sqrt{2Dh}\\,\\xi + h f(x', t + h)$. With $f(x, t) = -\\theta x + \\sin(\\omega t)$
this is $x' = (x + \\sqrt{2Dh}\\,\\xi + h \\sin(\\omega (t + h))) / (1 + \\theta h)$, written
here as a numpy recursion; a drift read at $t$ instead moves each step by
$h|\\sin(\\omega (t+h)) - \\sin(\\omega t)|/(1+\\theta h)$, about $10^{-2}$ here."""

import numpy as np
import torch

from torchebm.integrators import BackwardEulerMaruyamaIntegrator

THETA, OMEGA, D = 1.0, 4.0, 0.3


def _drift(x, t):
    return -THETA * x + torch.sin(OMEGA * t).reshape(-1, *([1] * (x.ndim - 1)))


def test_step_reads_the_drift_at_the_end_of_the_step():
    rng = np.random.default_rng(2)
    x, xi = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    t, h = 0.3, 0.1
    bem = BackwardEulerMaruyamaIntegrator(solver_max_iter=60, dtype=torch.float64)
    y = bem.step(
        {"x": torch.from_numpy(x)},
        h,
        drift=_drift,
        noise=torch.from_numpy(xi),
        diffusion=D,
        t=torch.full((5,), t, dtype=torch.float64),
    )["x"]
    ref = (x + np.sqrt(2 * D * h) * xi + h * np.sin(OMEGA * (t + h))) / (1 + THETA * h)
    np.testing.assert_allclose(y.numpy(), ref, rtol=0, atol=1e-13)


def test_deterministic_grid_is_the_implicit_recursion():
    x0 = np.linspace(-1.0, 1.0, 6).reshape(3, 2)
    grid = np.array([0.0, 0.05, 0.15, 0.3, 0.5, 0.8])  # non-uniform
    bem = BackwardEulerMaruyamaIntegrator(solver_max_iter=60, dtype=torch.float64)
    out = bem.integrate({"x": torch.from_numpy(x0)}, t=torch.from_numpy(grid), drift=_drift)["x"]
    x = x0
    for t, h in zip(grid[:-1], np.diff(grid)):
        x = (x + h * np.sin(OMEGA * (t + h))) / (1 + THETA * h)
    np.testing.assert_allclose(out.numpy(), x, rtol=0, atol=1e-13)
