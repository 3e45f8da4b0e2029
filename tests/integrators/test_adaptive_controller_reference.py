"""The adaptive Runge-Kutta path against a hand-written numpy loop of the documented
controller: embedded error $h\\sum_i e_i k_i$, scale $\\mathrm{atol} + \\mathrm{rtol}
\\max(|x|, |y|)$, RMS ratio, accept when ratio <= 1, new step
$h \\min(f_{max}, \\max(f_{min}, 0.9\\,\\mathrm{ratio}^{-1/q}))$ with $q$ the order of the
error estimate, and the Hairer-Norsett-Wanner starting step (Solving ODEs I, II.4).
Tableaux from Bogacki & Shampine (1989) and Dormand & Prince (1980)."""

import numpy as np
import pytest
import torch

from torchebm.integrators import (
    AdaptiveHeunIntegrator,
    Bosh3Integrator,
    Dopri5Integrator,
    Dopri8Integrator,
)

BOSH3 = dict(
    a=[[], [1 / 2], [0, 3 / 4], [2 / 9, 1 / 3, 4 / 9]],
    b_hat=[7 / 24, 1 / 4, 1 / 3, 1 / 8],
    c=[0, 1 / 2, 3 / 4, 1],
    q=3,
)
DOPRI5 = dict(
    a=[
        [],
        [1 / 5],
        [3 / 40, 9 / 40],
        [44 / 45, -56 / 15, 32 / 9],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
        [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
    ],
    b_hat=[5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40],
    c=[0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1],
    q=5,
)
# Dopri8's 13-stage tableau is long: taken from the class (pinned by test_runge_kutta.py's
# test_pinned_tableau_values); the controller around it is what is checked here
_D8_B = [*Dopri8Integrator.tableau_b, 0.0]
DOPRI8 = dict(
    a=[list(r) for r in Dopri8Integrator.tableau_a] + [list(Dopri8Integrator.tableau_b)],
    b_hat=[b - e for b, e in zip(_D8_B, Dopri8Integrator.error_weights)],
    c=[*Dopri8Integrator.tableau_c, 1.0],
    q=8,
)
# Heun's tableau with embedded Euler (no FSAL: the error uses the two stages only)
HEUN_EULER = dict(a=[[], [1]], b=[1 / 2, 1 / 2], b_hat=[1, 0], c=[0, 1], q=2)


def _f(x, t):
    return -(1.0 + t) * x + np.sin(3.0 * t)


def _rms(v):
    return float(np.sqrt(np.mean(v**2)))


def _stages(tab, x, t, h):
    ks = []
    for row, c in zip(tab["a"], tab["c"]):
        ks.append(_f(x + h * sum(a * k for a, k in zip(row, ks)), t + c * h))
    return ks


def _reference(
    tab, x, t0, t1, atol, rtol, first_step, max_step=np.inf, min_factor=0.2, max_factor=10.0
):
    """Returns ``(x(t1), nfe, rejected, clipped)``, ``clipped``: a step shrank by ``min_factor``."""
    q, fsal = tab["q"], "b" not in tab
    nfe, rejected, t, known_first, clipped = 0, 0, t0, False, False
    h = first_step
    if first_step is None:  # the starting step costs f(x0) (reused) and one more call
        f0 = _f(x, t0)
        scale = atol + rtol * np.abs(x)
        d0, d1 = _rms(x / scale), _rms(f0 / scale)
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        d2 = _rms((_f(x + h0 * f0, t0 + h0) - f0) / scale) / h0
        h = min(100 * h0, (0.01 / max(d1, d2)) ** (1 / q))
        nfe, known_first = 2, True
    h = min(h, t1 - t0, max_step)
    while t1 - t > 1e-12 * (t1 - t0):
        last = h >= t1 - t
        if last:
            h = t1 - t
        ks = _stages(tab, x, t, h)
        nfe += len(ks) - (1 if known_first else 0)
        if fsal:  # the last row of a is b: y is the last stage
            y, ks_err = x + h * sum(b * k for b, k in zip(tab["a"][-1], ks)), ks
        else:
            y = x + h * sum(b * k for b, k in zip(tab["b"], ks))
            ks_err = ks
        weights = tab["a"][-1] + [0.0] if fsal else tab["b"]
        err = h * sum((w - wh) * k for w, wh, k in zip(weights, tab["b_hat"], ks_err))
        ratio = _rms(err / (atol + rtol * np.maximum(np.abs(x), np.abs(y))))
        if ratio <= 1.0:
            x, t = y, (t1 if last else t + h)
        else:
            rejected += 1
        # f(x, t) is known after a rejection (x unchanged) and, FSAL, after an acceptance
        known_first = fsal or ratio > 1.0
        proposal = 0.9 * ratio ** (-1.0 / q)
        clipped = clipped or proposal < min_factor
        h = min(h * min(max_factor, max(min_factor, proposal)), max_step)
    return x, nfe, rejected, clipped


@pytest.mark.parametrize(
    "cls, tab",
    [
        (Bosh3Integrator, BOSH3),
        (Dopri5Integrator, DOPRI5),
        (Dopri8Integrator, DOPRI8),
        (AdaptiveHeunIntegrator, HEUN_EULER),
    ],
    ids=["bosh3", "dopri5", "dopri8", "adaptive_heun"],
)
@pytest.mark.parametrize("first_step", [None, 1.5], ids=["hnw_start", "given_start"])
def test_adaptive_path_is_the_documented_controller(cls, tab, first_step):
    rng = np.random.default_rng(1)
    x0 = rng.uniform(0.5, 2.0, size=(4, 2))
    atol, rtol = 1e-7, 1e-5
    ref, nfe, rejected, clipped = _reference(tab, x0, 0.0, 3.0, atol, rtol, first_step)
    integ = cls(dtype=torch.float64, atol=atol, rtol=rtol)
    out = integ.integrate(
        {"x": torch.from_numpy(x0)},
        first_step,
        t=torch.tensor([0.0, 3.0], dtype=torch.float64),
        drift=lambda x, t: -(1.0 + t[:, None]) * x + torch.sin(3.0 * t[:, None]),
    )["x"]
    # the same accepted steps give the same end point to rounding; one step more or less,
    # or any other sequence, moves it by about the tolerance (1e-5 relative)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10)
    assert integ.nfe == nfe
    assert nfe > 20 and rejected >= 1  # many steps, rejections included
    # a given first step of half the span is rejected with a factor clipped at min_factor
    # (for Dopri8 that needs an error ratio above 4.5^8: not reached here)
    assert clipped == (first_step is not None and cls is not Dopri8Integrator)


def test_max_step_size_caps_every_step():
    x0 = np.random.default_rng(3).uniform(0.5, 2.0, size=(4, 2))
    ref, nfe, _, _ = _reference(BOSH3, x0, 0.0, 3.0, 1e-7, 1e-5, None, max_step=0.005)
    free = _reference(BOSH3, x0, 0.0, 3.0, 1e-7, 1e-5, None)[1]
    assert nfe > 1.5 * free  # the cap binds: more steps than the controller alone takes
    integ = Bosh3Integrator(dtype=torch.float64, atol=1e-7, rtol=1e-5, max_step_size=0.005)
    out = integ.integrate(
        {"x": torch.from_numpy(x0)},
        t=torch.tensor([0.0, 3.0], dtype=torch.float64),
        drift=lambda x, t: -(1.0 + t[:, None]) * x + torch.sin(3.0 * t[:, None]),
    )["x"]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10)
    assert integ.nfe == nfe
