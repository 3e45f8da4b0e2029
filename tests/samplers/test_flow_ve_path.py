r"""FlowSampler on the geometric VE path $x_t = x_1 + \sigma(t) x_0$,
$\sigma(t) = \sigma_{max}^{1-t}\sigma_{min}^t$, with exact Gaussian fields written from the
closed form (not from the interpolant): the default start is the path's noise at t = 0
(N(0, sigma_max^2)), and an SDE last step ends at t = 1."""

from __future__ import annotations

import math

import pytest
import torch
from samplers_helpers import gaussian_tolerance
from torch import nn

from torchebm.interpolants import VarianceExplodingInterpolant
from torchebm.samplers import FlowSampler

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
LOG_RATIO = math.log(SIGMA_MIN / SIGMA_MAX)


def sigma_t(t: torch.Tensor) -> torch.Tensor:
    r"""$\sigma(t)$ of times ``t`` ``(B,)`` as a column ``(B, 1)``."""
    return SIGMA_MAX * torch.exp(t[:, None] * LOG_RATIO)


def sigma_sdot(t: float) -> tuple[float, float]:
    r"""$(\sigma, \sigma\dot\sigma)$ at one time ``t``."""
    s = SIGMA_MAX ** (1 - t) * SIGMA_MIN**t
    return s, s * s * LOG_RATIO


class GeometricVEField(nn.Module):
    r"""Exact velocity $v = \sigma\dot\sigma (x - M) / (S^2 + \sigma^2)$ for
    $x_1 \sim N(M, S^2)$ (here $M = 1$, $S = 0.5$). ``x`` `(B, D)`, ``t`` `(B,)`."""

    M, S = 1.0, 0.5

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = sigma_t(t)
        return sigma.square() * LOG_RATIO * (x - self.M) / (self.S**2 + sigma.square())


class GeometricVEScore(nn.Module):
    r"""Exact score $-(x - M)/(S^2 + \sigma^2)$ for $x_1 \sim N(M, S^2)$ (here $M = 1$,
    $S = 0.05$). ``x`` `(B, D)`, ``t`` `(B,)`."""

    M, S = 1.0, 0.05

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -(x - self.M) / (self.S**2 + sigma_t(t).square())


@pytest.mark.parametrize("mode", ["ode", "sde"])
def test_default_noise_on_the_ve_path_samples_the_data_law(mode):
    # standard normal noise at t = 0, where the path's law is N(M, S^2 + 80^2), was carried by
    # the exact flow to N(M, (S / 80)^2): std 0.0063 for 0.5
    interp = VarianceExplodingInterpolant(SIGMA_MIN, SIGMA_MAX)
    fs = FlowSampler(GeometricVEField(), mode=mode, interpolant=interp, dtype=torch.float64)
    n = 20_000
    x = fs.sample(dim=1, n_samples=n, generator=torch.Generator().manual_seed(0))
    # 5 standard errors of the sample mean and std of n draws of N(M, S^2), plus 3% for the
    # integrator (default dopri5 tolerances; Euler-Maruyama's 250 steps)
    M, S = GeometricVEField.M, GeometricVEField.S
    assert abs(x.mean().item() - M) < 5 * S / math.sqrt(n) + 0.03 * S, x.mean()
    assert abs(x.std().item() / S - 1) < 5 / math.sqrt(2 * n) + 0.03, x.std()


def test_given_noise_and_unit_sigma_paths_are_unchanged():
    # the linear path has sigma(0) = 1: the default start is the plain standard normal draw
    field = GeometricVEField()
    lin = FlowSampler(lambda x, t: -x, integrator="euler", dtype=torch.float64)
    a = lin.sample(dim=2, n_samples=4, n_steps=3, generator=torch.Generator().manual_seed(1))
    x0 = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, x0 * (1 - 1 / 3) ** 3, rtol=1e-12, atol=0)
    # a given x is used as it is, also on the VE path
    ve = FlowSampler(field, interpolant="ve", integrator="euler", dtype=torch.float64)
    start = torch.zeros(3, 1, dtype=torch.float64)
    out = ve.sample(x=start, n_steps=1)
    torch.testing.assert_close(out, start + field(start, torch.zeros(3, dtype=torch.float64)))


def exact_chain(t1: float, n_steps: int, delta: float) -> tuple[float, float]:
    r"""Mean and variance of the Euler-Maruyama chain on ``linspace(0, t1, n_steps + 1)``
    from $N(0, \sigma_{max}^2)$ with the SBDM diffusion $D = -\sigma\dot\sigma$, then the
    "Mean" step $x + \Delta(v + D s)$ at $t_1$. On this path $v + D s = b (x - M)$ with
    $b = 2\sigma\dot\sigma / (S^2 + \sigma^2)$, so the chain stays Gaussian."""
    M, S = GeometricVEScore.M, GeometricVEScore.S
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
