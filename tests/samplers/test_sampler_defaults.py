"""Defaults a researcher relies on without naming them, checked by what the sampler does.

The reference is torchebm 0.8.9's default (kept for compatibility) run through a hand-written
loop with the same random draws: ``NesterovSampler(momentum=0.9)``,
``GradientDescentSampler(step_size=1e-3)``,
``LangevinDynamics(step_size=1e-3, noise_scale=1.0)``,
``HamiltonianMonteCarlo(step_size=1e-3, n_leapfrog_steps=10)``, ``sample(n_steps=100)``;
and the documented NaN check every 10 steps (``BaseSampler.nan_check_every``). A 5% change
of a step size moves the chains by about $10^{-4}$ to $10^{-3}$ here, far above the
tolerance ($10^{-10}$).
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.core import BaseSampler, HarmonicModel
from torchebm.core.errors import NonFiniteError
from torchebm.samplers import (
    GradientDescentSampler,
    HamiltonianMonteCarlo,
    LangevinDynamics,
    NesterovSampler,
)

F64 = torch.float64
K = 3.0  # E = K x^2 / 2, gradient K x


def _x0() -> torch.Tensor:
    return torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(21))


def test_nesterov_default_momentum_is_0_9():
    # v <- mu v - eta grad E(x + mu v), x <- x + v, v_0 = 0, E = k x^2 / 2 (grad k x)
    eta, k, n = 0.05, 3.0, 6
    x0 = torch.tensor([[2.0], [-1.0]], dtype=torch.float64)
    traj = NesterovSampler(HarmonicModel(k=k), step_size=eta, dtype=torch.float64).sample(
        x=x0, n_steps=n, return_trajectory=True
    )
    x, v, rows = x0.clone(), torch.zeros_like(x0), []
    for _ in range(n):
        v = 0.9 * v - eta * k * (x + 0.9 * v)
        x = x + v
        rows.append(x)
    torch.testing.assert_close(traj, torch.stack(rows, 1), rtol=1e-12, atol=1e-12)


def test_langevin_defaults_are_step_1e_3_and_unit_noise():
    n = 4
    out = LangevinDynamics(HarmonicModel(k=K), dtype=F64).sample(
        x=_x0(), n_steps=n, generator=torch.Generator().manual_seed(22)
    )
    g, x = torch.Generator().manual_seed(22), _x0()
    xi = torch.empty_like(x)
    for _ in range(n):
        x = x - 1e-3 * K * x + math.sqrt(2 * 1e-3) * xi.normal_(generator=g)
    torch.testing.assert_close(out, x, rtol=1e-10, atol=1e-10)


def test_hmc_defaults_are_step_1e_3_and_10_leapfrog_steps():
    def energy(x):
        return 0.5 * K * x.square().sum(1)

    n, eps, n_lf = 3, 1e-3, 10
    out = HamiltonianMonteCarlo(HarmonicModel(k=K), dtype=F64).sample(
        x=_x0(), n_steps=n, generator=torch.Generator().manual_seed(23)
    )
    g, x = torch.Generator().manual_seed(23), _x0()
    p = torch.empty_like(x)
    for _ in range(n):
        p.normal_(generator=g)
        h_cur = energy(x) + 0.5 * p.square().sum(1)
        xn, q = x.clone(), p.clone()
        for _ in range(n_lf):  # kick, drift, kick
            q = q - 0.5 * eps * K * xn
            xn = xn + eps * q
            q = q - 0.5 * eps * K * xn
        log_ratio = h_cur - (energy(xn) + 0.5 * q.square().sum(1))
        accept = torch.empty_like(log_ratio).uniform_(generator=g).neg_().log1p_() <= log_ratio
        x = torch.where(accept[:, None], xn, x)
    torch.testing.assert_close(out, x, rtol=1e-10, atol=1e-10)


def test_sample_runs_100_steps_by_default():
    # the trajectory records one row per step
    traj = LangevinDynamics(HarmonicModel(k=K), dtype=F64).sample(
        x=_x0(), return_trajectory=True, generator=torch.Generator().manual_seed(24)
    )
    assert traj.shape == (5, 100, 2)


def test_nan_checks_run_every_10_steps_by_default():
    class TurnsNaN(BaseSampler):  # chain 1 turns NaN at step 3
        def step(self, state, ctx):
            if ctx.i + ctx.n >= 3:
                x = state["x"].clone()
                x[1] = float("nan")
                state["x"] = x
            return state

    with pytest.raises(NonFiniteError) as info:
        TurnsNaN(HarmonicModel(), nan_policy="raise").sample(x=torch.zeros(3, 2), n_steps=25)
    # the first check after step 3 is the one at step 10: the window is steps 1-10
    assert info.value.indices == [1] and info.value.windows == [(1, 10)]


def test_gradient_descent_default_step_is_1e_3():
    out = GradientDescentSampler(HarmonicModel(k=K), dtype=F64).sample(x=_x0(), n_steps=5)
    torch.testing.assert_close(out, _x0() * (1 - 1e-3 * K) ** 5, rtol=1e-12, atol=1e-12)
