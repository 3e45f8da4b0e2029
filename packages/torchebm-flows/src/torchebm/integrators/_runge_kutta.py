r"""Explicit Runge-Kutta methods for ODEs: fixed-step (midpoint, RK4, 3/8) and adaptive
embedded pairs (Bogacki-Shampine 3(2), Dormand-Prince 5(4) and 8(7))."""

from __future__ import annotations

from torchebm.integrators._base_runge_kutta import BaseRungeKuttaIntegrator

__all__ = [
    "MidpointIntegrator",
    "RK4Integrator",
    "RK438Integrator",
    "Bosh3Integrator",
    "Dopri5Integrator",
    "Dopri8Integrator",
]


class MidpointIntegrator(BaseRungeKuttaIntegrator):
    r"""Explicit midpoint rule: $x' = x + h f(x + \tfrac h2 f(x,t), t + \tfrac h2)$.

    Arguments as in [`BaseRungeKuttaIntegrator`][torchebm.integrators.BaseRungeKuttaIntegrator]
    (``device``, ``dtype``; a fixed-step method: the other options are unused).

    Tableau ``a = [[], [1/2]]``, ``b = [0, 1]``, ``c = [0, 1/2]``; order 2.

    Example:
        >>> import torch
        >>> out = MidpointIntegrator().integrate({"x": torch.ones(2, 1)}, 0.1, 10,
        ...                                      drift=lambda x, t: -x)

    References:
        Hairer, Norsett, Wanner, "Solving Ordinary Differential Equations I", 1993 (II.1).
    """

    tableau_a = ((), (0.5,))
    tableau_b = (0.0, 1.0)
    tableau_c = (0.0, 0.5)


class RK4Integrator(BaseRungeKuttaIntegrator):
    r"""Classic fourth-order Runge-Kutta.

    Arguments as in [`BaseRungeKuttaIntegrator`][torchebm.integrators.BaseRungeKuttaIntegrator]
    (``device``, ``dtype``; fixed steps, classical RK4: the other options are unused).

    Tableau ``c = (0, 1/2, 1/2, 1)``, ``b = (1/6, 1/3, 1/3, 1/6)``, ``a`` rows ``(1/2)``,
    ``(0, 1/2)``, ``(0, 0, 1)``; order 4.

    Example:
        >>> import torch
        >>> out = RK4Integrator().integrate({"x": torch.ones(2, 1)}, 0.1, 10,
        ...                                 drift=lambda x, t: -x)

    References:
        Kutta, "Beitrag zur naeherungsweisen Integration totaler Differentialgleichungen", 1901.
    """

    tableau_a = ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0))
    tableau_b = (1 / 6, 1 / 3, 1 / 3, 1 / 6)
    tableau_c = (0.0, 0.5, 0.5, 1.0)


class RK438Integrator(BaseRungeKuttaIntegrator):
    r"""Kutta's 3/8 rule, a fourth-order method with smaller error constants than RK4.

    Arguments as in [`BaseRungeKuttaIntegrator`][torchebm.integrators.BaseRungeKuttaIntegrator]
    (``device``, ``dtype``; fixed steps, the 3/8 rule: the other options are unused).

    Tableau ``a`` rows ``(1/3)``, ``(-1/3, 1)``, ``(1, -1, 1)``; ``b = (1/8, 3/8, 3/8, 1/8)``;
    ``c = (0, 1/3, 2/3, 1)``; order 4.

    Example:
        >>> import torch
        >>> out = RK438Integrator().integrate({"x": torch.ones(2, 1)}, 0.1, 10,
        ...                                   drift=lambda x, t: -x)

    References:
        Kutta, "Beitrag zur naeherungsweisen Integration totaler Differentialgleichungen", 1901.
    """

    tableau_a = ((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0))
    tableau_b = (1 / 8, 3 / 8, 3 / 8, 1 / 8)
    tableau_c = (0.0, 1 / 3, 2 / 3, 1.0)


class Bosh3Integrator(BaseRungeKuttaIntegrator):
    r"""Bogacki-Shampine 3(2) adaptive pair with FSAL.

    Arguments as in [`BaseRungeKuttaIntegrator`][torchebm.integrators.BaseRungeKuttaIntegrator]
    (``device``, ``dtype`` and the step-size controller: ``atol``, ``rtol``, ...).

    ``a`` rows ``(1/2)``, ``(0, 3/4)``; ``b = (2/9, 1/3, 4/9)``; ``c = (0, 1/2, 3/4)``;
    error weights ``(2/9 - 7/24, 1/3 - 1/4, 4/9 - 1/3, -1/8)`` including the FSAL stage.

    Example:
        >>> import torch
        >>> out = Bosh3Integrator(atol=1e-6, rtol=1e-6).integrate(
        ...     {"x": torch.ones(2, 1)}, 0.1, 10, drift=lambda x, t: -x)

    References:
        Bogacki & Shampine, "A 3(2) pair of Runge-Kutta formulas", Appl. Math. Lett. 1989.
    """

    tableau_a = ((), (0.5,), (0.0, 0.75))
    tableau_b = (2 / 9, 1 / 3, 4 / 9)
    tableau_c = (0.0, 0.5, 0.75)
    error_weights = (2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8)
    order = 3
    fsal = True


class Dopri5Integrator(BaseRungeKuttaIntegrator):
    r"""Dormand-Prince 5(4) adaptive pair (six stages plus FSAL), the ``ode45`` workhorse.

    Arguments as in [`BaseRungeKuttaIntegrator`][torchebm.integrators.BaseRungeKuttaIntegrator]
    (``device``, ``dtype`` and the controller of its adaptive path: ``atol``, ``rtol``, ...).

    Error weights $e = b - \hat b =$ ``(71/57600, 0, -71/16695, 71/1920,
    -17253/339200, 22/525, -1/40)``; step-size exponent $-1/5$.

    Example:
        >>> import torch
        >>> d5 = Dopri5Integrator(atol=1e-8, rtol=1e-8)
        >>> out = d5.integrate({"x": torch.ones(2, 1, dtype=torch.float64)},
        ...                    t=torch.tensor([0.0, 1.0], dtype=torch.float64),
        ...                    drift=lambda x, t: -x)
        >>> d5.nfe > 0
        True

    References:
        Dormand & Prince, "A family of embedded Runge-Kutta formulae", J. Comput. Appl.
        Math. 6(1), 1980.
    """

    tableau_a = (
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    )
    tableau_b = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
    tableau_c = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
    error_weights = (
        71 / 57600,
        0.0,
        -71 / 16695,
        71 / 1920,
        -17253 / 339200,
        22 / 525,
        -1 / 40,
    )
    order = 5
    fsal = True


class Dopri8Integrator(BaseRungeKuttaIntegrator):
    r"""Dormand-Prince 8(7) adaptive pair (13 stages, FSAL), for very tight tolerances.

    Arguments as in [`BaseRungeKuttaIntegrator`][torchebm.integrators.BaseRungeKuttaIntegrator]
    (``device``, ``dtype`` and the step-size controller: ``atol``, ``rtol``, ...).

    The rational coefficients of Prince & Dormand's RK8(7)13M as used by torchdiffeq and
    diffrax (``dopri8``); error weights have 14 entries (the last, FSAL, is 0); step-size
    exponent $-1/8$.

    Example:
        >>> import torch
        >>> d8 = Dopri8Integrator(atol=1e-10, rtol=1e-10)
        >>> out = d8.integrate({"x": torch.ones(2, 1, dtype=torch.float64)},
        ...                    t=torch.tensor([0.0, 1.0], dtype=torch.float64),
        ...                    drift=lambda x, t: -x)

    References:
        Prince & Dormand, "High order embedded Runge-Kutta formulae", J. Comput. Appl.
        Math. 7(1), 1981.
    """

    tableau_a = (
        (),
        (1 / 18,),
        (1 / 48, 1 / 16),
        (1 / 32, 0.0, 3 / 32),
        (5 / 16, 0.0, -75 / 64, 75 / 64),
        (3 / 80, 0.0, 0.0, 3 / 16, 3 / 20),
        (
            29443841 / 614563906,
            0.0,
            0.0,
            77736538 / 692538347,
            -28693883 / 1125000000,
            23124283 / 1800000000,
        ),
        (
            16016141 / 946692911,
            0.0,
            0.0,
            61564180 / 158732637,
            22789713 / 633445777,
            545815736 / 2771057229,
            -180193667 / 1043307555,
        ),
        (
            39632708 / 573591083,
            0.0,
            0.0,
            -433636366 / 683701615,
            -421739975 / 2616292301,
            100302831 / 723423059,
            790204164 / 839813087,
            800635310 / 3783071287,
        ),
        (
            246121993 / 1340847787,
            0.0,
            0.0,
            -37695042795 / 15268766246,
            -309121744 / 1061227803,
            -12992083 / 490766935,
            6005943493 / 2108947869,
            393006217 / 1396673457,
            123872331 / 1001029789,
        ),
        (
            -1028468189 / 846180014,
            0.0,
            0.0,
            8478235783 / 508512852,
            1311729495 / 1432422823,
            -10304129995 / 1701304382,
            -48777925059 / 3047939560,
            15336726248 / 1032824649,
            -45442868181 / 3398467696,
            3065993473 / 597172653,
        ),
        (
            185892177 / 718116043,
            0.0,
            0.0,
            -3185094517 / 667107341,
            -477755414 / 1098053517,
            -703635378 / 230739211,
            5731566787 / 1027545527,
            5232866602 / 850066563,
            -4093664535 / 808688257,
            3962137247 / 1805957418,
            65686358 / 487910083,
        ),
        (
            403863854 / 491063109,
            0.0,
            0.0,
            -5068492393 / 434740067,
            -411421997 / 543043805,
            652783627 / 914296604,
            11173962825 / 925320556,
            -13158990841 / 6184727034,
            3936647629 / 1978049680,
            -160528059 / 685178525,
            248638103 / 1413531060,
            0.0,
        ),
    )
    tableau_b = (
        14005451 / 335480064,
        0.0,
        0.0,
        0.0,
        0.0,
        -59238493 / 1068277825,
        181606767 / 758867731,
        561292985 / 797845732,
        -1041891430 / 1371343529,
        760417239 / 1151165299,
        118820643 / 751138087,
        -528747749 / 2220607170,
        1 / 4,
    )
    tableau_c = (
        0.0,
        1 / 18,
        1 / 12,
        1 / 8,
        5 / 16,
        3 / 8,
        59 / 400,
        93 / 200,
        5490023248 / 9719169821,
        13 / 20,
        1201146811 / 1299019798,
        1.0,
        1.0,
    )
    error_weights = (
        14005451 / 335480064 - 13451932 / 455176623,
        0.0,
        0.0,
        0.0,
        0.0,
        -59238493 / 1068277825 + 808719846 / 976000145,
        181606767 / 758867731 - 1757004468 / 5645159321,
        561292985 / 797845732 - 656045339 / 265891186,
        -1041891430 / 1371343529 + 3867574721 / 1518517206,
        760417239 / 1151165299 - 465885868 / 322736535,
        118820643 / 751138087 - 53011238 / 667516719,
        -528747749 / 2220607170 - 2 / 45,
        1 / 4,
        0.0,
    )
    order = 8
    fsal = True
