"""FlowSampler SDE on the VE path: the last step ends at t = 1, not at 1 + last_step_size."""

from __future__ import annotations

import math

import pytest
import torch
from samplers_helpers import gaussian_tolerance
from torch import nn

from torchebm.interpolants import VarianceExplodingInterpolant
from torchebm.samplers import FlowSampler

M, S = 1.0, 0.05  # data law N(M, S^2)
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
LOG_RATIO = math.log(SIGMA_MIN / SIGMA_MAX)


def sigma_sdot(t: float) -> tuple[float, float]:
    r"""$(\sigma, \sigma\dot\sigma)$ of the geometric VE schedule
    $\sigma(t) = \sigma_{max}^{1-t}\sigma_{min}^t$, written from its closed form."""
    s = SIGMA_MAX ** (1 - t) * SIGMA_MIN**t
    return s, s * s * LOG_RATIO


class GeometricVEScore(nn.Module):
    r"""Exact score $-(x - M)/(S^2 + \sigma^2)$ of $x_t = x_1 + \sigma(t) x_0$,
    $x_1 \sim N(M, S^2)$. ``x`` `(B, D)`, ``t`` `(B,)`."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = SIGMA_MAX * torch.exp(t[:, None] * LOG_RATIO)
        return -(x - M) / (S**2 + sigma.square())


def exact_chain(t1: float, n_steps: int, delta: float) -> tuple[float, float]:
    r"""Mean and variance of the Euler-Maruyama chain on ``linspace(0, t1, n_steps + 1)``
    from $N(0, \sigma_{max}^2)$ with the SBDM diffusion $D = -\sigma\dot\sigma$, then the
    "Mean" step $x + \Delta(v + D s)$ at $t_1$. On this path $v + D s = b (x - M)$ with
    $b = 2\sigma\dot\sigma / (S^2 + \sigma^2)$, so the chain stays Gaussian."""
    m, p = 0.0, SIGMA_MAX**2
    for k in range(n_steps):
        t, h = t1 * k / n_steps, t1 / n_steps
        s, ssd = sigma_sdot(t)
        b = 2 * ssd / (S**2 + s * s)
        m, p = m + h * b * (m - M), (1 + h * b) ** 2 * p - 2 * ssd * h
    s, ssd = sigma_sdot(t1)
    b = 2 * ssd / (S**2 + s * s)
    return m + delta * b * (m - M), (1 + delta * b) ** 2 * p


@pytest.mark.parametrize("interpolant", ["ve", "edm"])
def test_the_last_step_of_a_ve_path_ends_at_the_data_time(interpolant):
    # the chain ran to t = 1 and the last step went on to t = 1.04, outside the path
    # (diagnostic t = 1.04), against the documented t1 = 1 - last_step_size
    fs = FlowSampler(GeometricVEScore(), mode="sde", interpolant=interpolant, prediction="score")
    assert fs._check_interval() == (0.0, pytest.approx(0.96))
    no_last = FlowSampler(GeometricVEScore(), mode="sde", interpolant=interpolant, last_step=None)
    assert no_last._check_interval() == (0.0, 1.0)
    assert FlowSampler(GeometricVEScore(), interpolant=interpolant)._check_interval() == (0.0, 1.0)


def test_ve_sde_samples_the_exact_chain_ending_at_t_1():
    interp = VarianceExplodingInterpolant(SIGMA_MIN, SIGMA_MAX)
    fs = FlowSampler(
        GeometricVEScore(), mode="sde", interpolant=interp, prediction="score", dtype=torch.float64
    )
    n, n_steps = 20_000, 60
    traj, diag = fs.sample(
        dim=1,
        n_samples=n,
        n_steps=n_steps,
        thin=20,
        return_trajectory=True,
        return_diagnostics=True,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(
        diag["t"], torch.tensor([0.32, 0.64, 1.0], dtype=torch.float64), rtol=0, atol=1e-12
    )
    mean, var = exact_chain(0.96, n_steps, 0.04)
    x = traj[:, -1, 0]
    tol_mean, tol_var = gaussian_tolerance(n)  # 5 standard errors, sampling only
    assert abs(x.mean().item() - mean) < tol_mean * math.sqrt(var), (x.mean(), mean)
    assert abs(x.var().item() / var - 1) < tol_var, (x.var(), var)
