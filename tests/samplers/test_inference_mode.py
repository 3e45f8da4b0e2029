"""Sampling under ``torch.inference_mode()`` (how evaluation code often draws samples): the
autograd gradient paths (a user `BaseModel`, a plain module, RMHMC's force, AIS's target
gradient) leave inference mode for the gradient, so they give what ``no_grad`` gives."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from _support.losses import DiagonalQuadratic
from torch import nn

from torchebm.core import BaseModel
from torchebm.samplers import (
    GradientDescentSampler,
    RiemannianManifoldHMC,
    annealed_importance_sampling,
)

W = (1.0, 2.0)
Quadratic = partial(DiagonalQuadratic, W)  # E = 1/2 sum w x^2 through autograd


class PlainQuadratic(nn.Module):
    """The same energy as a plain module (the sampler's own autograd path)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(W, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.w * x.square()).sum(-1)


@pytest.mark.parametrize("model_cls", [Quadratic, PlainQuadratic])
def test_gradient_descent_under_inference_mode_matches_closed_form(model_cls):
    model = model_cls()
    x0 = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    eta, k = 0.1, 7
    sampler = GradientDescentSampler(model, step_size=eta, dtype=torch.float64)
    with torch.inference_mode():
        out = sampler.sample(x=x0, n_steps=k)
    # x_k = (1 - eta w)^k x0 per coordinate (float64 closed form)
    ref = x0 * torch.tensor([(1.0 - eta * w) ** k for w in W], dtype=torch.float64)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())


class Linear(BaseModel):
    def __init__(self, a: torch.Tensor) -> None:
        super().__init__(dtype=torch.float64)
        self.a = nn.Parameter(a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.a).sum(-1)


def test_rmhmc_under_inference_mode_exact_on_linear_energy():
    # E = a.x with constant metric G = c I: the generalised leapfrog is exact, every proposal
    # is accepted, and after one step of L leapfrogs of size eps
    # x1 - x0 = eps L G^-1 p - (eps L)^2 / 2 G^-1 a, p ~ N(0, G).
    a, c, eps, n_leap, n = torch.tensor([1.0, -2.0], dtype=torch.float64), 2.0, 0.1, 5, 20000

    def metric(x: torch.Tensor) -> torch.Tensor:
        return c * torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2)

    sampler = RiemannianManifoldHMC(
        Linear(a), metric, step_size=eps, n_leapfrog_steps=n_leap, dtype=torch.float64
    )
    x0 = torch.zeros(n, 2, dtype=torch.float64)
    with torch.inference_mode():
        x1 = sampler.sample(x=x0, n_steps=1, generator=torch.Generator().manual_seed(1))
    tau = eps * n_leap
    mean, sd = -0.5 * tau**2 * a / c, tau / math.sqrt(c)
    d = x1 - x0
    assert torch.all(d.abs().sum(1) > 0)  # every chain moved (accepted)
    torch.testing.assert_close(d.mean(0), mean, rtol=0, atol=4 * sd / math.sqrt(n))
    var_tol = 4 * sd**2 * math.sqrt(2 / (n - 1))  # 4 standard errors of a sample variance
    torch.testing.assert_close(
        d.var(0), torch.full((2,), sd**2, dtype=torch.float64), rtol=0, atol=var_tol
    )


def test_ais_plain_target_under_inference_mode_estimates_log_z():
    s = 0.7  # target N(0, s^2 I) in 2-D as a plain module: log Z = log(2 pi s^2)

    class Target(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * x.square().sum(-1) / s**2

    with torch.inference_mode():
        res = annealed_importance_sampling(
            Target(),
            2000,
            2,
            n_intermediate=20,
            transition="mala",
            step_size=0.1,
            dtype=torch.float64,
            generator=torch.Generator().manual_seed(2),
        )
    exact = math.log(2 * math.pi * s**2)
    assert abs(res.log_z - exact) < 4 * res.standard_error + 1e-3
