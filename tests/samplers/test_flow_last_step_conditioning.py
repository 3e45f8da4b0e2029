"""FlowSampler's SDE last step receives the call's conditioning (``model_kwargs`` / ``y=``).

Reference: with ``diffusion_form="constant", diffusion_norm=0`` the SDE has no noise and no
score term, so the chain is the explicit Euler scheme of $dx/dt = v(x, t, y)$ on the grid
$0, \\dots, t_1 = 1 - \\Delta$, and the ``"Euler"``/``"Mean"`` last step is
$x + \\Delta\\,v(x, t_1, y)$. The field $v = -x + y$ has its fixed point at the label, so a
last step evaluated without the label (or with another label) moves every sample by
$\\Delta\\,y$ (0.3 here, against a float64 comparison at 1e-10).
"""

from __future__ import annotations

import pytest
import torch

from torchebm.samplers import FlowSampler

F64 = torch.float64


def field(x, t, y=None):  # y=None: the unconditional field, fixed point 0
    return -x if y is None else -x + y[:, None].to(x.dtype)


def _hand_euler(x, y, t1, n_steps, delta):
    times = [t1 * k / n_steps for k in range(n_steps)] + [t1]
    for k in range(n_steps):
        x = x + (times[k + 1] - times[k]) * field(x, times[k], y)
    return x + delta * field(x, t1, y)


@pytest.mark.parametrize("last_step", ["Euler", "Mean"])
def test_last_step_uses_the_conditioning(last_step):
    delta, n_steps = 0.1, 8
    fs = FlowSampler(
        field, mode="sde", diffusion_form="constant",
        diffusion_norm=0.0, last_step=last_step, last_step_size=delta,
    ).to(F64)  # fmt: skip
    x0 = torch.randn(16, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    y = torch.full((16,), 3.0, dtype=F64)
    out = fs.sample(x=x0, n_steps=n_steps, y=y, generator=torch.Generator().manual_seed(1))
    ref = _hand_euler(x0, y, 1.0 - delta, n_steps, delta)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
