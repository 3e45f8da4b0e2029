"""A model whose own ``gradient`` is taken by autograd, as a user writes one (the samplers
and the energy-matching chains call it in grad mode and outside inference mode)."""

from __future__ import annotations

import torch

from torchebm.core import BaseModel

__all__ = ["AutogradQuadratic"]


class AutogradQuadratic(BaseModel):
    """$E(x) = \\tfrac12 |x|^2$ with a ``gradient`` of its own, by autograd."""

    def forward(self, x):
        return 0.5 * x.square().sum(-1)

    def gradient(self, x, model_kwargs=None):
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(self(x).sum(), x)[0]
