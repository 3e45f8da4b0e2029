"""FlowSampler's SDE ``last_step`` options against a hand-written chain with the same draws.

On the linear path $x_t = t\\,x_1 + (1 - t)\\,x_0$ the conversions have closed forms:
$s = (t\\,v - x)/(1 - t)$ and Tweedie's $\\mathbb E[x_1 \\mid x_t] = (x + \\sigma^2 s)/\\alpha
= x + (1 - t)\\,v$. The chain is Euler-Maruyama for $dx = (v + D s)\\,dt + \\sqrt{2D}\\,dW$ on
the grid $t_0 = \\varepsilon, \\dots, t_1 = 1 - \\Delta$, then the last step from $t_1$:
``"Euler"`` $x + \\Delta\\,v$, ``"Tweedie"`` $x + (1 - t_1)\\,v$. The comparison is exact
(float64, same generator), so a 5% error in $\\Delta$ or a dropped $\\sigma$ fails.

The grid start: with a velocity field and a diffusion other than ``"SBDM"`` nothing is
singular at $t = 0$ of the linear path, and the documented interval starts there
($t_0 = 0$, $t_1 = 1 - 10^{-3}$ for ``sample_eps=0`` and no last step).
"""

from __future__ import annotations

import pytest
import torch

from torchebm.interpolants import LinearInterpolant
from torchebm.samplers import FlowSampler

F64 = torch.float64


def field(x, t):
    return -x + 0.5  # a velocity field with a fixed point off 0 (the last step is not linear)


def _hand_chain(x, t0, t1, n_steps, last_step, generator, form="SBDM"):
    interp = LinearInterpolant()  # only its diffusion coefficient D(t) is used
    times = [t0 + (t1 - t0) * k / n_steps for k in range(n_steps)] + [t1]
    for k in range(n_steps):
        t, h = times[k], times[k + 1] - times[k]
        v = field(x, t)
        s = (t * v - x) / (1.0 - t)
        d = interp.compute_diffusion(x, torch.full((x.shape[0],), t, dtype=F64), form, 1.0)
        xi = torch.randn(x.shape, generator=generator, dtype=F64)
        x = x + h * (v + d * s) + torch.sqrt(2 * d * h) * xi
    if last_step is None:
        return x
    v = field(x, t1)
    return x + (1.0 - t1) * v if last_step == "Tweedie" else x + last_step * v


@pytest.mark.parametrize("last_step", ["Euler", "Tweedie"])
@pytest.mark.parametrize("delta", [0.05, 0.3])
def test_last_step_is_the_hand_written_map(last_step, delta):
    eps, n_steps = 0.01, 12
    fs = FlowSampler(
        field, mode="sde", sample_eps=eps, last_step=last_step, last_step_size=delta
    ).to(F64)
    x0 = torch.randn(32, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    out, diag = fs.sample(
        x=x0, n_steps=n_steps, return_diagnostics=True, generator=torch.Generator().manual_seed(4)
    )
    step = delta if last_step == "Euler" else last_step
    ref = _hand_chain(x0, eps, 1.0 - delta, n_steps, step, torch.Generator().manual_seed(4))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    assert diag["t"][-1].item() == pytest.approx(1.0)  # t1 + last_step_size


@pytest.mark.parametrize("form", ["sigma", "linear"])
def test_a_velocity_sde_without_sbdm_starts_its_grid_at_t_0(form):
    n_steps = 10
    fs = FlowSampler(field, mode="sde", diffusion_form=form, last_step=None).to(F64)
    x0 = torch.randn(16, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
    out, diag = fs.sample(
        x=x0, n_steps=n_steps, return_diagnostics=True, generator=torch.Generator().manual_seed(6)
    )
    t1 = 1.0 - 1e-3
    grid = torch.tensor([t1 * k / n_steps for k in range(1, n_steps + 1)], dtype=F64)
    torch.testing.assert_close(diag["t"], grid, rtol=0, atol=1e-12)
    ref = _hand_chain(x0, 0.0, t1, n_steps, None, torch.Generator().manual_seed(6), form)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
