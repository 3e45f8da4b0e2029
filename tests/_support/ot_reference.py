"""Entropic optimal transport written by hand, the reference of the Sinkhorn couplings' tests."""

from __future__ import annotations

import torch

__all__ = ["scaling_sinkhorn"]


def scaling_sinkhorn(
    x0: torch.Tensor, x1: torch.Tensor, reg: float, phi: float, n_iters: int
) -> torch.Tensor:
    """Float64 Sinkhorn in the scaling form on the max-normalised squared Euclidean cost.

    ``u = (a / K v)^phi``, ``v = (b / K^T u)^phi`` with ``K = exp(-C / reg)``, uniform
    ``a = b = 1/B`` (``phi = 1``: balanced; ``phi = rho / (rho + reg)``: the generalised-KL
    unbalanced problem with entropy ``sum pi (log pi - 1)``, POT's ``reg_type="entropy"``).

    Args:
        x0: Source points ``(B0, d)``.
        x1: Target points ``(B1, d)``.
        reg: Entropic regularisation (on the cost over its maximum).
        phi: Exponent of the updates (1 for the balanced problem).
        n_iters: Number of ``(u, v)`` updates.

    Returns:
        The plan ``(B0, B1)`` in float64.
    """
    c = ((x0[:, None, :] - x1[None, :, :]) ** 2).sum(-1).double()
    c = c / c.max()
    k = torch.exp(-c / reg)
    a = torch.full((c.shape[0],), 1.0 / c.shape[0], dtype=torch.float64)
    b = torch.full((c.shape[1],), 1.0 / c.shape[1], dtype=torch.float64)
    u, v = torch.ones_like(a), torch.ones_like(b)
    for _ in range(n_iters):
        u = (a / (k @ v)) ** phi
        v = (b / (k.T @ u)) ** phi
    return u[:, None] * k * v[None, :]
