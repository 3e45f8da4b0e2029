"""Finite-difference ("approx") score matching with data far from the origin in float32:
the step x + fd_epsilon v is rounded to x's grid, and the quotient divides by that step."""

from __future__ import annotations

import pytest
import torch

from torchebm.core.errors import ConfigurationError
from torchebm.losses import ScoreMatching

F32, F64 = torch.float32, torch.float64


class _Quadratic(torch.nn.Module):
    """E(x) = 1/2 (x - m)^T P (x - m), P = L diag(exp(logp)) L^T (L fixed, unit diagonal)."""

    def __init__(self, m: torch.Tensor, logp: torch.Tensor, lower: torch.Tensor):
        super().__init__()
        self.m = torch.nn.Parameter(m.clone())
        self.logp = torch.nn.Parameter(logp.clone())
        self.register_buffer("lower", lower.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = (x - self.m) @ self.lower  # (B, D)
        return 0.5 * (r.square() * self.logp.exp()).sum(1)


def _reference(x, m, logp, lower):
    """Float64 closed form: mean(1/2 |P (x - m)|^2) - tr P, and its parameter gradients."""
    x, lower = x.to(F64), lower.to(F64)
    m, logp = m.to(F64).requires_grad_(True), logp.to(F64).requires_grad_(True)
    prec = lower @ torch.diag(logp.exp()) @ lower.T
    j = (0.5 * ((x - m) @ prec).square().sum(1)).mean() - torch.trace(prec)
    gm, gl = torch.autograd.grad(j, (m, logp))
    return j.detach(), gm, gl


def _case(scale: float, full: bool):
    d, std = 3, 100.0
    gen = torch.Generator().manual_seed(0)
    x = (scale + std * torch.randn(64, d, generator=gen, dtype=F64)).to(F32)
    m = torch.full((d,), scale, dtype=F32) + torch.tensor([10.0, -20.0, 5.0])
    logp = torch.log(torch.tensor([1.0, 2.0, 0.5]) / std**2)
    lower = torch.eye(d)
    if full:
        lower[1, 0], lower[2, 0], lower[2, 1] = 0.6, -0.4, 0.5
    return x, m, logp, lower


def test_approx_score_matching_at_2e4_in_float32_matches_the_float64_closed_form():
    # diagonal Hessian: Rademacher probes make every method exact; x + 1e-3 rounded to
    # x + 2e-3 (the float32 spacing at 2e4): the trace and d/dlogp were 2x off (J 7x)
    x, m, logp, lower = _case(2e4, full=False)
    model = _Quadratic(m, logp, lower)
    loss = ScoreMatching(model, hessian_method="approx", hutchinson_samples=1)
    value = loss(x, generator=torch.Generator().manual_seed(1))
    value.backward()
    j, gm, gl = _reference(x, m, logp, lower)
    torch.testing.assert_close(value.to(F64), j, rtol=1e-3, atol=0.0)
    torch.testing.assert_close(model.logp.grad.to(F64), gl, rtol=1e-3, atol=0.0)
    torch.testing.assert_close(model.m.grad.to(F64), gm, rtol=1e-3, atol=1e-3 * gm.abs().max())


def test_approx_trace_is_unbiased_with_a_full_hessian_and_steps_of_1_and_2_spacings():
    # entries around 1e4 and 2e4 (float32 spacings 1e-3 and 2e-3: steps 1.95e-3 and 3.9e-3)
    x, m, logp, lower = _case(1e4, full=True)
    x[:, 1] += 1e4
    m = m.clone()
    m[1] += 1e4
    model = _Quadratic(m, logp, lower)
    n_probes = 1024
    loss = ScoreMatching(model, hessian_method="approx", hutchinson_samples=n_probes)
    with torch.no_grad():
        value = loss(x, generator=torch.Generator().manual_seed(2))
    j, _, _ = _reference(x, m, logp, lower)
    prec = lower.to(F64) @ torch.diag(logp.to(F64).exp()) @ lower.to(F64).T
    # probe noise: sum_{i != j} H_ij v_i v_j r_ij with |r_ij| <= 2 (step ratios), averaged
    # over 64 x 1024 probes; 5 sigma is below 2% of tr P
    off = (prec - torch.diag(torch.diag(prec))).square().sum()
    sigma = float((4.0 * off / (64 * n_probes)).sqrt())
    assert 5 * sigma < 0.02 * float(torch.trace(prec))
    assert abs(float(value) - float(j)) < 5 * sigma, (float(value), float(j), sigma)


def test_approx_raises_when_fd_epsilon_is_below_the_spacing_of_x():
    x, m, logp, lower = _case(1e5, full=False)  # float32 spacing 7.8e-3 > fd_epsilon
    loss = ScoreMatching(_Quadratic(m, logp, lower), hessian_method="approx")
    with pytest.raises(ConfigurationError, match=r"fd_epsilon=0\.001 is below the spacing"):
        loss(x, generator=torch.Generator().manual_seed(0))
    # a step above the spacing is fine
    loss = ScoreMatching(_Quadratic(m, logp, lower), hessian_method="approx", fd_epsilon=0.1)
    j, _, _ = _reference(x, m, logp, lower)
    value = loss(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(value.to(F64), j, rtol=1e-3, atol=0.0)
