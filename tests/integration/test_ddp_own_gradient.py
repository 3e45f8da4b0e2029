"""AIS, ParallelTemperingCD and EnergyMatchingLoss over a ``DistributedDataParallel``
model use its module's own ``gradient`` (``own_gradient``), like the samplers do.

DDP has no ``gradient`` attribute, so these three sites differentiated through DDP's
forward with autograd and a closed-form or explicit gradient was lost. Single-process
gloo group on CPU; the wrapped model counts its ``gradient`` calls.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
from integration_helpers import P_QUADRATIC, CountingQuadratic
from torch import nn

from torchebm.flows import EnergyMatchingLoss
from torchebm.integrators._state import own_gradient
from torchebm.losses import ParallelTemperingCD
from torchebm.samplers import AnnealedImportanceSampling, LangevinDynamics

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)

F64 = torch.float64
P = P_QUADRATIC


def runs(build):
    """``build(model)`` over the bare model and over DDP of a fresh one: (results, calls)."""
    out = []
    for wrap in (False, True):
        model = CountingQuadratic()
        out.append((build(nn.parallel.DistributedDataParallel(model) if wrap else model), model))
    return [r for r, _ in out], [m.calls for _, m in out]


def test_own_gradient_unwraps_ddp_only(ddp_group):
    model = CountingQuadratic()
    ddp = nn.parallel.DistributedDataParallel(model)
    assert own_gradient(ddp) == model.gradient
    assert own_gradient(nn.DataParallel(model)) is None  # DataParallel keeps autograd
    assert own_gradient(nn.Linear(2, 1)) is None


def test_ais_over_ddp_uses_the_modules_gradient(ddp_group):
    def build(m):
        ais = AnnealedImportanceSampling(m, n_intermediate=50, transition="mala", step_size=0.2)
        g = torch.Generator().manual_seed(0)
        return ais.estimate(n_chains=400, dim=2, dtype=F64, generator=g)

    (bare, wrapped), calls = runs(build)
    assert calls[0] > 0 and calls[1] == calls[0]  # was 0 over DDP: autograd through forward
    torch.testing.assert_close(wrapped.log_weights, bare.log_weights, rtol=1e-12, atol=1e-12)
    log_z = math.log(2 * math.pi) - 0.5 * math.log(float(torch.linalg.det(P)))  # closed form
    assert abs(wrapped.log_z - log_z) < 4 * wrapped.standard_error + 1e-3


def test_parallel_tempering_over_ddp_uses_the_modules_gradient(ddp_group):
    x0 = torch.randn(2, 64, 2, generator=torch.Generator().manual_seed(1), dtype=F64)

    def build(m):
        s = LangevinDynamics(m, step_size=0.01)
        pt = ParallelTemperingCD(m, s, temperatures=(1.0, 4.0), k_steps=5, dtype=F64)
        pt.tempered_chains = x0.clone()
        return pt.negative_phase(torch.zeros(64, 2, dtype=F64), generator=torch.Generator())

    (bare, wrapped), calls = runs(build)
    assert calls[0] == 5 and calls[1] == 5  # was 0 over DDP
    torch.testing.assert_close(wrapped, bare, rtol=1e-12, atol=1e-12)


def test_energy_matching_langevin_over_ddp_uses_the_modules_gradient(ddp_group):
    n, h, eps = 20, 0.01, 0.0  # eps_max = 0: gradient descent x <- x - h P x
    x1 = torch.randn(16, 2, generator=torch.Generator().manual_seed(2), dtype=F64)

    def build(m):
        em = EnergyMatchingLoss(
            m, epsilon_max=eps, n_langevin_steps=n, langevin_dt=h, noise_fraction=0.0, dtype=F64
        )
        return em.negative_samples(x1, None, {}, torch.Generator().manual_seed(3))[0]

    (bare, wrapped), calls = runs(build)
    assert calls == [n, n]  # was [n, 0]: autograd through DDP's forward
    g = torch.Generator().manual_seed(3)  # hand-written float64 loop, same start rows
    torch.randperm(16, generator=g)
    ref = x1[torch.randperm(16, generator=g)]  # distinct data rows
    for _ in range(n):
        ref = ref - h * ref @ P
    torch.testing.assert_close(wrapped, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(wrapped, bare, rtol=0, atol=0)
