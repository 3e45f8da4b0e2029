"""Hand-written optimal-transport floors: normalised cost, auction assignment, Sinkhorn."""

from __future__ import annotations

import math

import torch

__all__ = ["auction", "normalised_cost", "sinkhorn_indices"]


def normalised_cost(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances of the flattened samples divided by their maximum (the
    samples centred first: cdist's matmul path cancels far from the origin)."""
    a, b = x0.reshape(x0.shape[0], -1), x1.reshape(x1.shape[0], -1)
    m = 0.5 * (a.mean(0) + b.mean(0))
    c = torch.cdist(a - m, b - m).square_()
    return c / c.max().clamp(min=1e-12)


def auction(cost: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """Min-cost assignment by Bertsekas' Jacobi forward auction with epsilon-scaling.

    Every unassigned row bids for its best column (price + best - second best + eps); each
    column goes to its highest bidder (ties: lowest row) and prices persist across phases;
    eps starts at a quarter of the benefit range and is divided by 8 per phase down to
    ``tol / n``. Bookkeeping by scatters into a spare slot, so the only host sync per round
    is the count of unassigned rows. Returns ``idx`` with row ``i`` assigned column
    ``idx[i]``.
    """
    n = cost.shape[0]
    dev = cost.device
    benefit = -cost.to(torch.float64)
    lo, hi = torch.aminmax(benefit)
    final = tol / n
    eps = max(float(hi - lo) / 4.0, final)
    prices = torch.zeros(n, dtype=torch.float64, device=dev)
    cols = torch.arange(n, device=dev)
    neg_inf = torch.full((n,), -math.inf, dtype=torch.float64, device=dev)
    no_row = torch.full((n,), n, dtype=torch.long, device=dev)
    cap, rounds = max(200, 100 * n), 0
    while True:
        row_col = torch.full((n + 1,), -1, dtype=torch.long, device=dev)  # slot n: spare
        col_row = torch.full((n,), -1, dtype=torch.long, device=dev)
        while rounds < cap:
            free = torch.nonzero(row_col[:n] < 0).squeeze(1)
            if free.numel() == 0:
                break
            rounds += 1
            top = (benefit.index_select(0, free) - prices).topk(2, dim=1)
            best = top.indices[:, 0]
            bid = prices[best] + (top.values[:, 0] - top.values[:, 1]) + eps
            col_bid = neg_inf.scatter_reduce(0, best, bid, "amax")
            winner = no_row.scatter_reduce(
                0, best, torch.where(bid == col_bid[best], free, n), "amin"
            )
            won = winner < n
            row_col.scatter_(0, torch.where(won & (col_row >= 0), col_row, n), -1)
            row_col.scatter_(0, torch.where(won, winner, n), cols)
            col_row = torch.where(won, winner, col_row)
            prices = torch.where(won, col_bid, prices)
        if rounds >= cap or eps <= final:
            break
        eps = max(eps / 8.0, final)
    return row_col[:n]


def sinkhorn_indices(
    cost: torch.Tensor, reg: float, n_iters: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Log-domain Sinkhorn with uniform marginals, then one target per row from the plan."""
    n, m = cost.shape
    mat = -cost / reg
    f = torch.zeros(n, dtype=mat.dtype, device=mat.device)
    g = torch.zeros(m, dtype=mat.dtype, device=mat.device)
    la, lb = -math.log(n), -math.log(m)
    for _ in range(n_iters):
        f = la - torch.logsumexp(mat + g[None, :], dim=1)
        g = lb - torch.logsumexp(mat + f[:, None], dim=0)
    plan = (mat + f[:, None] + g[None, :]).exp_()
    return torch.multinomial(plan, 1, generator=generator).squeeze(1)
