r"""Adding an integrator: Ralston's second-order Runge-Kutta method as a Butcher tableau.

The whole integrator is the tableau: `BaseRungeKuttaIntegrator` (in `torchebm.integrators`)
owns validation, the fixed-grid and time-grid loops, backward time, `nfe` and the SDE
noise of its `BaseSDERungeKuttaIntegrator` sibling. Ralston's method minimises the
truncation-error bound among explicit two-stage methods of order 2:

$$ k_1 = f(x_n, t_n),\quad k_2 = f(x_n + \tfrac23 h k_1,\ t_n + \tfrac23 h),\quad
   x_{n+1} = x_n + h\,(\tfrac14 k_1 + \tfrac34 k_2). $$

The script integrates $\dot x = -x + t$ (exact solution known) with 20, 40 and 80 steps
and prints the measured convergence order, which is 2. The test suite imports
`RalstonIntegrator` from this file and runs it through the Runge-Kutta contract
(tableau consistency, measured order).

References:
    Ralston, "Runge-Kutta methods with minimum error bounds", Math. Comp. 16 (1962).
"""

from __future__ import annotations

import math

import torch

from torchebm.integrators import BaseRungeKuttaIntegrator

__all__ = ["RalstonIntegrator", "measured_order"]


class RalstonIntegrator(BaseRungeKuttaIntegrator):
    r"""Ralston's method: explicit, two stages, order 2 (no embedded error estimate).

    Example:
        >>> out = RalstonIntegrator().integrate({"x": torch.ones(4, 2)}, 0.1, 10,
        ...                                     drift=lambda x, t: -x)
        >>> out["x"].shape
        torch.Size([4, 2])
    """

    tableau_a = ((), (2 / 3,))
    tableau_b = (1 / 4, 3 / 4)
    tableau_c = (0.0, 2 / 3)


def measured_order(integrator: BaseRungeKuttaIntegrator, ns=(20, 40, 80)) -> list[float]:
    r"""$\log_2$ of successive error ratios on $\dot x = -x + t$, $x(0) = 1/2$, at $t = 1$."""
    exact = (0.5 + 1.0) * math.exp(-1.0)  # x(t) = t - 1 + (x0 + 1) e^{-t} at t = 1
    x0 = torch.full((2, 1), 0.5, dtype=torch.float64)
    errors = []
    for n in ns:
        out = integrator.integrate({"x": x0}, 1.0 / n, n, drift=lambda x, t: -x + t[:, None])
        errors.append(abs(out["x"][0, 0].item() - exact))
    return [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]


if __name__ == "__main__":
    ralston = RalstonIntegrator(dtype=torch.float64)
    print("measured order of RalstonIntegrator:", [round(r, 3) for r in measured_order(ralston)])
    print("drift evaluations of the last call:", ralston.nfe)
