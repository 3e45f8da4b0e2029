"""The energies of a Metropolis test or of importance weights are computed outside an ambient
autocast: bfloat16 rounds an energy near 1000 to a multiple of 4, so the accept/reject test
samples another law and AIS weights are off by the rounding (found with
``torch.autocast("cpu", dtype=torch.bfloat16)`` around ``sample()``)."""

from __future__ import annotations

import math

import torch
from _support.offset import OffsetQuadratic

from torchebm.samplers import HamiltonianMonteCarlo, annealed_importance_sampling


def test_hmc_under_bfloat16_autocast_keeps_the_target():
    # MALA-like HMC (L = 1, h = 1.2: about half the proposals rejected) from exact draws of
    # N(0, I): the chains stay there. With the rounded energies the variance was 1.26.
    n = 8000
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, 2, generator=g)
    sampler = HamiltonianMonteCarlo(OffsetQuadratic(), step_size=1.2, n_leapfrog_steps=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sampler.sample(x=x0, n_steps=20, generator=g)
    assert out.dtype == torch.float32
    var = out.double().var(0).mean().item()
    se = math.sqrt(2.0 / (2 * n))  # of the variance of 2n independent N(0, 1) values
    assert abs(var - 1.0) < 4 * se, (var, se)  # 4 se = 0.045: a 5 % error fails


def test_ais_weights_under_bfloat16_autocast_are_exact():
    # target = base + 1000: every weight is exactly -1000 (the rounded gaps gave 0.66 off)
    g = torch.Generator().manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r = annealed_importance_sampling(OffsetQuadratic(), 256, 2, n_intermediate=20, generator=g)
    assert abs(r.log_z - (math.log(2 * math.pi) - 1000.0)) < 1e-3


def test_rmhmc_runs_under_bfloat16_autocast_and_keeps_the_target():
    # the momentum bmm(chol, xi) came out in bfloat16 under autocast and the integrator
    # refused the state ("state['p'] must have the dtype of state['x']"): RMHMC never ran
    from torchebm.core import GaussianModel
    from torchebm.samplers import RiemannianManifoldHMC

    eye = torch.eye(2)

    def metric(x):  # position-dependent, positive definite
        return eye.expand(len(x), 2, 2) * (1 + 0.1 * x.square().sum(-1))[:, None, None]

    n = 4000
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, 2, generator=g)  # exact draws of N(0, I)
    sampler = RiemannianManifoldHMC(
        GaussianModel(torch.zeros(2), torch.eye(2)), metric, step_size=0.3, n_leapfrog_steps=3
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sampler.sample(x=x0, n_steps=5, generator=g)
    assert out.dtype == torch.float32
    var = out.double().var(0).mean().item()
    assert abs(var - 1.0) < 4 * math.sqrt(2.0 / (2 * n)), var


def test_ais_mala_transitions_under_bfloat16_autocast_are_those_of_float32():
    # only the weights' energies were guarded: the MALA transitions' accept/reject test
    # still compared bfloat16 energies (their acceptance rate moved)
    rates = []
    for on in (False, True):
        g = torch.Generator().manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=on):
            r = annealed_importance_sampling(
                OffsetQuadratic(), 256, 2, n_intermediate=10, transition="mala", generator=g
            )
        rates.append(r.acceptance_rate)
    assert rates[0] == rates[1], rates
