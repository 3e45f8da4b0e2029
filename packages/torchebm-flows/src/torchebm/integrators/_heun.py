r"""Heun's method (explicit trapezoid) and its adaptive Heun-Euler pair."""

from __future__ import annotations

from torchebm.integrators._base_runge_kutta import (
    BaseRungeKuttaIntegrator,
    BaseSDERungeKuttaIntegrator,
)

__all__ = ["HeunIntegrator", "AdaptiveHeunIntegrator"]


class HeunIntegrator(BaseSDERungeKuttaIntegrator):
    r"""Heun's method: $k_1 = f(x,t)$, $k_2 = f(x + hk_1, t+h)$,
    $x' = x + \tfrac h2(k_1 + k_2)$ (plus Euler-Maruyama noise for SDEs).

    Arguments as in [`BaseRungeKuttaIntegrator`][torchebm.integrators.BaseRungeKuttaIntegrator]
    (``device``, ``dtype``; the adaptive and implicit-stage options are unused).

    Tableau ``a = [[], [1]]``, ``b = [1/2, 1/2]``, ``c = [0, 1]``; order 2 for ODEs.

    For SDEs the Ito noise $\sqrt{2D|h|}\,\xi$ is added after the deterministic step (see
    [`BaseSDERungeKuttaIntegrator`][torchebm.integrators.BaseSDERungeKuttaIntegrator]); the
    predictor carries no noise. This is not torchsde's (Stratonovich) ``"heun"``, whose
    predictor and corrector both carry it ($g = \sqrt{2D}$): on an Ornstein-Uhlenbeck process
    both have strong order 1 (additive noise), this one weak order 1, torchsde's 2. In
    Langevin dynamics it does not lower the stationary bias of Euler-Maruyama: on that
    process at $h\lambda = 0.2$ its stationary variance is 22 % high, Euler-Maruyama's 11 %.

    Example:
        >>> import torch
        >>> out = HeunIntegrator().integrate({"x": torch.ones(3, 2)}, 0.1, 10,
        ...                                  drift=lambda x, t: -x)

    References:
        Heun, "Neue Methoden zur approximativen Integration der Differentialgleichungen
        einer unabhaengigen Veraenderlichen", 1900.
    """

    tableau_a = ((), (1.0,))
    tableau_b = (0.5, 0.5)
    tableau_c = (0.0, 1.0)


class AdaptiveHeunIntegrator(BaseRungeKuttaIntegrator):
    r"""Adaptive Heun-Euler 2(1) pair: Heun's tableau with embedded Euler.

    Arguments as in [`BaseRungeKuttaIntegrator`][torchebm.integrators.BaseRungeKuttaIntegrator]
    (``device``, ``dtype`` and the step-size controller: ``atol``, ``rtol``, ...).

    Error weights $e = (1/2, -1/2)$ (no FSAL); step-size exponent $-1/2$. Two drift
    evaluations per step: the next step starts from $f(x_{n+1}, t + h)$. torchdiffeq's
    ``adaptive_heun`` evaluates once per step, reusing $f(x + hk_1, t + h)$ (the Euler
    predictor's) in its place, so its ``nfe`` is about half of this one's for the same steps.

    Example:
        >>> import torch
        >>> ah = AdaptiveHeunIntegrator(atol=1e-6, rtol=1e-6)
        >>> out = ah.integrate({"x": torch.ones(3, 2)}, 0.1, 10, drift=lambda x, t: -x)

    References:
        Hairer, Norsett, Wanner, "Solving Ordinary Differential Equations I", 1993 (II.4).
    """

    tableau_a = ((), (1.0,))
    tableau_b = (0.5, 0.5)
    tableau_c = (0.0, 1.0)
    error_weights = (0.5, -0.5)
    order = 2
