"""FlowSampler on a user path with ONE singular end: $\\alpha(0) = 0$ but $\\sigma(1) \\ne 0$.

The docstring: "a custom interpolant with $\\alpha(0) = 0$ or $\\sigma(1) = 0$ (read off its
coefficients) is treated as the linear path", so with a score prediction and the default
``sample_eps=0`` the ODE runs over $(t_0, t_1) = (10^{-3}, 1 - 10^{-3})$.

Reference: the path $\\alpha = t$, $\\sigma = 1 - t/2$ and data $\\mathcal N(\\mu, s^2)$ have
the exact marginals $\\mathcal N(\\alpha_t\\mu, v_t)$, $v_t = \\alpha_t^2 s^2 + \\sigma_t^2$,
the exact score $-(x - \\alpha_t\\mu)/v_t$, and the probability-flow map is affine:
$x_{t_1} = \\alpha_{t_1}\\mu + \\sqrt{v_{t_1}/v_{t_0}}\\,(x_{t_0} - \\alpha_{t_0}\\mu)$. A sampler
integrating over $(0, 1)$ instead is off by about $\\mu\\,10^{-3}$ plus the change in the
scale ratio (0.003 here), against a tolerance of 1e-6 (float64, tight dopri5).
"""

from __future__ import annotations

import math

import torch

from torchebm.core import BaseInterpolant
from torchebm.integrators import Dopri5Integrator
from torchebm.samplers import FlowSampler

F64 = torch.float64
MU, S = 2.0, 0.5


class _AlphaZeroAtNoise(BaseInterpolant):
    def compute_alpha_t(self, t):
        return t, torch.ones_like(t)

    def compute_sigma_t(self, t):
        return 1 - 0.5 * t, -0.5 * torch.ones_like(t)


def _var(t):
    return (t * S) ** 2 + (1 - 0.5 * t) ** 2


def score(x, t):
    tb = t.reshape(-1, *([1] * (x.ndim - 1)))
    return -(x - tb * MU) / _var(tb)


def test_one_singular_end_keeps_the_linear_paths_interval():
    fs = FlowSampler(
        score, interpolant=_AlphaZeroAtNoise(), prediction="score",
        integrator=Dopri5Integrator(atol=1e-11, rtol=1e-11, dtype=F64), dtype=F64,
    )  # fmt: skip
    t0, t1 = 1e-3, 1 - 1e-3
    xi = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    x0 = t0 * MU + math.sqrt(_var(t0)) * xi
    out, diag = fs.sample(x=x0, n_steps=4, return_diagnostics=True)
    want = t1 * MU + math.sqrt(_var(t1) / _var(t0)) * (x0 - t0 * MU)
    assert abs(float(diag["t"][-1]) - t1) < 1e-12
    torch.testing.assert_close(out, want, rtol=0, atol=1e-6)
