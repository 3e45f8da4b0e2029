"""SDE integrators on Ornstein-Uhlenbeck with a ``(B,)`` per-sample diffusion: the exact
moments of the discrete chains (weak error zero by construction, only sampling error).

On $dx = -\\theta x\\,dt + \\sqrt{2D}\\,dW$ one step of size $h$ is $x' = a x + c\\sqrt{2Dh}\\,\\xi$
with $a = 1 - \\theta h$, $c = 1$ (Euler-Maruyama), $a = 1 - \\theta h + (\\theta h)^2/2$,
$c = 1$ (Heun's drift, Euler-Maruyama noise) and $a = c = 1/(1 + \\theta h)$ (drift-implicit
Euler-Maruyama, noise before the solve). After $n$ steps from $x_0$: mean $a^n x_0$,
variance $2Dh\\,c^2 (1 - a^{2n}) / (1 - a^2)$.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.integrators import (
    BackwardEulerMaruyamaIntegrator,
    EulerMaruyamaIntegrator,
    HeunIntegrator,
)

F64 = torch.float64
THETA, H, N_STEPS, X0 = 1.5, 0.1, 25, 2.0
LEVELS = (0.25, 1.0, 4.0)


def _factors(cls):
    th = THETA * H
    if cls is EulerMaruyamaIntegrator:
        return 1 - th, 1.0
    if cls is HeunIntegrator:
        return 1 - th + th * th / 2, 1.0
    return 1 / (1 + th), 1 / (1 + th)


@pytest.mark.parametrize(
    "cls", [EulerMaruyamaIntegrator, HeunIntegrator, BackwardEulerMaruyamaIntegrator]
)
@pytest.mark.parametrize("how", ["diffusion", "callable", "noise_scale"])
def test_per_sample_diffusion_gives_each_row_its_exact_moments(cls, how):
    per_level = 12_000
    d = torch.tensor(LEVELS, dtype=F64).repeat_interleave(per_level)  # (B,)
    kwargs = {
        "diffusion": {"diffusion": d},
        "callable": {"diffusion": lambda x, t: d},
        "noise_scale": {"noise_scale": d.sqrt()},
    }[how]
    extra = {"solver_max_iter": 20} if cls is BackwardEulerMaruyamaIntegrator else {}
    integ = cls(dtype=F64, **extra)
    x0 = torch.full((d.shape[0], 2), X0, dtype=F64)
    out = integ.integrate(
        {"x": x0}, H, N_STEPS, drift=lambda x, t: -THETA * x,
        generator=torch.Generator().manual_seed(1), **kwargs,
    )["x"]  # fmt: skip
    a, c = _factors(cls)
    n = 2 * per_level  # two independent coordinates per row
    z = 4.0
    assert z * math.sqrt(2 / n) < 0.05  # a 5% error of a variance fails
    for j, level in enumerate(LEVELS):
        rows = out[j * per_level : (j + 1) * per_level]
        mean = X0 * a**N_STEPS
        var = 2 * level * H * c * c * (1 - a ** (2 * N_STEPS)) / (1 - a * a)
        assert abs(float(rows.mean()) - mean) < z * math.sqrt(var / n), (level, rows.mean(), mean)
        assert abs(float(rows.var()) / var - 1) < z * math.sqrt(2 / n), (level, rows.var(), var)
