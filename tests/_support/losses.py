"""Shared helpers of tests/losses (and of tests that need only core's models): a minimal Langevin sampler (torchebm.samplers is not a dependency
of torchebm-losses), small energy models, and sample-quality metrics."""

from __future__ import annotations

import math

import torch
from torch import nn

from torchebm.core import BaseModel, TorchEBMModule


class TinyLangevin(TorchEBMModule):
    r"""``x <- x - h grad E(x) + noise_scale * sqrt(2h) xi``: the sampler interface CD expects."""

    def __init__(self, model, step_size=0.05, noise_scale=1.0, n_steps=None):
        super().__init__()
        self.model = model
        self.step_size = step_size
        self.noise_scale = noise_scale
        if n_steps is not None:
            self.n_steps = n_steps
        self.calls = 0

    def _grad(self, x, model_kwargs):
        g = getattr(self.model, "gradient", None)
        if g is not None:
            return g(x, model_kwargs=model_kwargs) if model_kwargs else g(x)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            e = self.model(xg, **(model_kwargs or {}))
            return torch.autograd.grad(e.sum(), xg)[0]

    @torch.no_grad()
    def sample(
        self, x=None, dim=None, n_steps=10, n_samples=1, *, model_kwargs=None, generator=None
    ):
        self.calls += 1
        if x is None:
            x = torch.randn(n_samples, dim, generator=generator)
        x = x.clone()
        h = self.step_size
        for _ in range(n_steps):
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x - h * self._grad(x, model_kwargs) + self.noise_scale * math.sqrt(2 * h) * noise
        return x


class Quadratic(BaseModel):
    r"""Isotropic quadratic energy ``E = w/2 |x|^2`` with a learnable curvature ``w``."""

    def __init__(self, w=0.3):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(w)))

    def forward(self, x):
        return 0.5 * self.w * x.reshape(x.shape[0], -1).pow(2).sum(1)


class DiagonalQuadratic(BaseModel):
    r"""$E(x) = \tfrac12 \sum_i w_i x_i^2$ in float64 through autograd (no closed-form
    gradient), with learnable weights ``w``."""

    def __init__(self, w=(1.0, 2.0)):
        super().__init__(dtype=torch.float64)
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))

    def forward(self, x):
        return 0.5 * (self.w * x.square()).sum(-1)


class LabelledQuadratic(BaseModel):
    r"""$E(x \mid y) = \tfrac12 \lVert x - \mu_y \rVert^2$ in float64, $\mu_y$ read from an
    ``nn.Embedding`` of 3 labels in 2-D (no closed-form gradient: autograd saves ``y``)."""

    def __init__(self):
        super().__init__(dtype=torch.float64)
        self.mu = nn.Embedding(3, 2, dtype=torch.float64)

    def forward(self, x, y):
        return 0.5 * (x - self.mu(y)).square().sum(-1)


class MLPEnergy(BaseModel):
    def __init__(self, dim=2, hidden=32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x):
        return self.net(x).squeeze(-1)


def mixture_2d(n, generator, std=0.25, radius=2.0):
    """Two-component 2-D mixture at (+-radius, 0) with isotropic std."""
    comp = torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1
    centres = torch.stack([comp * radius, torch.zeros(n)], 1)
    return centres + std * torch.randn(n, 2, generator=generator)


def mmd_rbf(x, y, bandwidths=(0.2, 0.5, 1.0, 2.0)):
    """Biased squared MMD with a sum of RBF kernels."""
    xy = torch.cat([x, y])
    d2 = torch.cdist(xy, xy).pow(2)
    k = sum(torch.exp(-d2 / (2 * b * b)) for b in bandwidths)
    n = x.shape[0]
    return (k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()).item()
