"""A sampler over a ``DistributedDataParallel`` model uses its module's own ``gradient``.

DDP has no ``gradient`` attribute, so samplers differentiated through DDP's forward with
autograd: a closed-form gradient (``MLPEnergy``'s explicit backward, analytic models) was
lost, 2-4x slower for a 2-64-64-1 ``MLPEnergy`` (single-process gloo, CPU).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from integration_helpers import P_QUADRATIC, CountingQuadratic
from torch import nn

from torchebm.samplers import GradientDescentSampler, LangevinDynamics

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)

P = P_QUADRATIC


def test_descent_over_ddp_uses_the_modules_closed_form_gradient(ddp_group):
    model = CountingQuadratic()
    sampler = GradientDescentSampler(nn.parallel.DistributedDataParallel(model), step_size=0.1)
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = sampler.sample(x=x0, n_steps=5)
    assert model.calls == 5  # was 0: autograd through DDP's forward
    ref = x0.clone()  # hand-written float64 loop: x <- x - eta P x
    for _ in range(5):
        ref = ref - 0.1 * ref @ P
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_langevin_over_ddp_equals_the_bare_module(ddp_group):
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    runs = []
    for wrap in (False, True):
        model = CountingQuadratic()
        m = nn.parallel.DistributedDataParallel(model) if wrap else model
        s = LangevinDynamics(m, step_size=0.01)
        runs.append(s.sample(x=x0, n_steps=10, generator=torch.Generator().manual_seed(2)))
        assert model.calls == 10
    torch.testing.assert_close(runs[1], runs[0], rtol=0, atol=0)
