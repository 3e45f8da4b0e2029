r"""Euler-Maruyama (explicit and drift-implicit) integrators."""

from __future__ import annotations

from torchebm.integrators._base_runge_kutta import BaseSDERungeKuttaIntegrator

__all__ = ["EulerMaruyamaIntegrator", "BackwardEulerMaruyamaIntegrator"]


class EulerMaruyamaIntegrator(BaseSDERungeKuttaIntegrator):
    r"""Euler-Maruyama: $x' = x + h f(x, t) + \sqrt{2D h}\,\xi$.

    Arguments as in [`BaseRungeKuttaIntegrator`][torchebm.integrators.BaseRungeKuttaIntegrator]
    (``device``, ``dtype``; the adaptive and implicit-stage options are unused).

    Tableau ``a = [[]]``, ``b = [1]``, ``c = [0]``. Order 1 for ODEs, strong order 1/2
    for SDEs. With ``drift = -grad U`` and ``noise_scale = sigma`` one step is the
    (unadjusted) Langevin update $x - h\nabla U + \sigma\sqrt{2h}\,\xi$.

    Example:
        >>> import torch
        >>> em = EulerMaruyamaIntegrator()
        >>> x = torch.zeros(128, 2)
        >>> out = em.step({"x": x}, 0.01, drift=lambda x, t: -x, noise_scale=1.0)
        >>> out["x"].shape
        torch.Size([128, 2])

    References:
        Maruyama, "Continuous Markov processes and stochastic equations", 1955.
        Kloeden & Platen, "Numerical Solution of Stochastic Differential Equations", 1992.
    """

    tableau_a = ((),)
    tableau_b = (1.0,)
    tableau_c = (0.0,)


class BackwardEulerMaruyamaIntegrator(BaseSDERungeKuttaIntegrator):
    r"""Drift-implicit Euler-Maruyama: $x' = x + h f(x', t + h) + \sqrt{2D h}\,\xi$.

    Arguments as in [`BaseRungeKuttaIntegrator`][torchebm.integrators.BaseRungeKuttaIntegrator]
    (``device``, ``dtype``; ``solver_*`` drive the implicit stage).

    Tableau ``a = [[1]]``, ``b = [1]``, ``c = [1]``. The noise increment, with $D$
    evaluated at $(x_n, t_n)$, enters the implicit equation
    $x' = (x + \sqrt{2D h}\,\xi) + h f(x', t + h)$, which is solved by Picard iteration
    with ``solver_max_iter`` drift evaluations in total (default 8). The iteration converges
    only when $h\,\mathrm{Lip}(f) < 1$, and then by the factor $h\,\mathrm{Lip}(f)$ per
    evaluation: near 1 it needs many more than 8 (0.9 needs about 130 to reach
    ``solver_tol`` = 1e-6). On $dx = -\theta x\,dt + \sqrt{2D}\,dW$ one step is
    $x' = (x + \sqrt{2Dh}\,\xi)/(1 + \theta h)$, with the stationary variance
    $2Dh/((1 + \theta h)^2 - 1)$ (below the exact $D/\theta$, never above it); a solve cut
    off after $n$ evaluations gives instead $x' = a\,(x + \sqrt{2Dh}\,\xi)$ with
    $a = (1 - (-\theta h)^{n+1})/(1 + \theta h)$ and the variance $2Dh\,a^2/(1 - a^2)$
    (at $\theta h = 0.9$, $n = 8$: three times the scheme's). Per chain, the solve is
    checked on the last two iterates of $x'$ (their RMS difference at most
    ``solver_tol`` times $\max(1, \operatorname{rms}(x'))$): `solver_converged` gives,
    after each `step`/`integrate` call, the chains whose every solve converged, and
    `LangevinDynamics` and `FlowSampler` warn once per ``sample()`` about the steps that
    did not. ``solver_check_every`` > 0 stops a solve early once every chain converged.

    Example:
        >>> import torch
        >>> bem = BackwardEulerMaruyamaIntegrator(solver_max_iter=20)
        >>> out = bem.integrate({"x": torch.ones(4, 1)}, 0.1, 10, drift=lambda x, t: -x)

    References:
        Kloeden & Platen, "Numerical Solution of Stochastic Differential Equations", 1992
        (drift-implicit Euler scheme, Sec. 12.2).
    """

    tableau_a = ((1.0,),)
    tableau_b = (1.0,)
    tableau_c = (1.0,)
