"""Shared models, fields and sampler factories of the samplers tests."""

from __future__ import annotations

import math

import torch
from _support.examples import load_example
from torch import nn

from torchebm.core import BaseModel, HarmonicModel
from torchebm.samplers import (
    FlowSampler,
    GradientDescentSampler,
    HamiltonianMonteCarlo,
    LangevinDynamics,
    NesterovSampler,
    RiemannianManifoldHMC,
)


class MLPEnergy(BaseModel):
    """A small neural energy with a confining quadratic term (flat ``(B, d)`` states)."""

    def __init__(self, d: int = 2):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1) + 0.5 * x.square().sum(-1)


class LinearField(nn.Module):
    """``v(x, t) = -a x + t`` with a learnable ``a``: works for any event shape."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.5))

    def forward(self, x, t):
        return -self.a * x + t.reshape(-1, *([1] * (x.ndim - 1)))


def identity_metric(x):
    d = x[0].numel()
    return 2.0 * torch.eye(d, dtype=x.dtype, device=x.device).expand(x.shape[0], d, d)


#: name -> (factory(model, **kw) -> sampler, kind) ; kind "energy" or "flow"
FACTORIES = {
    "langevin": (lambda m, **kw: LangevinDynamics(m, **{"step_size": 0.05, **kw}), "energy"),
    "langevin_heun": (
        lambda m, **kw: LangevinDynamics(m, **{"step_size": 0.05, "integrator": "heun", **kw}),
        "energy",
    ),
    "hmc": (
        lambda m, **kw: HamiltonianMonteCarlo(m, **{"step_size": 0.1, "n_leapfrog_steps": 3, **kw}),
        "energy",
    ),
    "rmhmc": (
        lambda m, **kw: RiemannianManifoldHMC(
            m, identity_metric, **{"step_size": 0.1, "n_leapfrog_steps": 2, **kw}
        ),
        "energy",
    ),
    "gd": (lambda m, **kw: GradientDescentSampler(m, **{"step_size": 0.1, **kw}), "energy"),
    "gd_stop": (
        lambda m, **kw: GradientDescentSampler(m, **{"step_size": 0.1, "grad_tol": 1e-3, **kw}),
        "energy",
    ),
    "nesterov": (
        lambda m, **kw: NesterovSampler(m, **{"step_size": 0.1, "momentum": 0.5, **kw}),
        "energy",
    ),
    "flow_ode": (lambda m, **kw: FlowSampler(m, **{"integrator": "heun", **kw}), "flow"),
    "flow_ode_adaptive": (lambda m, **kw: FlowSampler(m, **kw), "flow"),
    "flow_sde": (lambda m, **kw: FlowSampler(m, **{"mode": "sde", **kw}), "flow"),
    # the worked example of docs/contributing.md ("Adding a sampler")
    "rwm": (
        lambda m, **kw: load_example("50_custom_sampler.py").RandomWalkMetropolis(
            m, **{"step_size": 0.5, **kw}
        ),
        "energy",
    ),
}

STOCHASTIC = {"langevin", "langevin_heun", "hmc", "rmhmc", "flow_sde", "rwm"}


def analytic_model(kind: str, **kw):
    return HarmonicModel(**kw) if kind == "energy" else LinearField()


def neural_model(kind: str):
    return MLPEnergy() if kind == "energy" else LinearField()


def gaussian_tolerance(n: int, z: float = 5.0) -> tuple[float, float]:
    """(mean tol, relative variance tol) for ``n`` iid samples at ``z`` standard errors."""
    return z / math.sqrt(n), z * math.sqrt(2.0 / n)
