"""EquilibriumMatchingLoss's regression targets: $-c(t)\\,u_t$ for each gradient-magnitude
family ``ct``, and $x_0$ / $-x_0/\\sigma_t$ for the noise / score predictions.

Reference: $c(t)$ written by hand for each family (Wang & Du 2025: truncated
$\\lambda\\min(1, (1-t)/(1-a))$, linear $\\lambda(1-t)$, constant $\\lambda$, or a callable
times $\\lambda$) and $u_t = x_1 - x_0$ of the linear path, with a zero model so that the
per-sample loss is $c(t)^2\\,\\overline{u_t^2}$. The times are fixed (a callable
``t_sampler``) and span $[0.05, 0.95]$, so a 5% error in $c$ or in the slope of $1 - t$
moves the loss by more than the float64 tolerance.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.flows import EquilibriumMatchingLoss

F64 = torch.float64
B, LAM, A = 32, 3.0, 0.7


class Zero(nn.Module):
    def forward(self, x, t):
        return torch.zeros_like(x)


def _times(batch, *, device=None, dtype=None, generator=None):
    return torch.linspace(0.05, 0.95, batch, dtype=dtype, device=device)


HAND = {
    "truncated": lambda t: LAM * torch.clamp((1 - t) / (1 - A), max=1.0),
    "linear": lambda t: LAM * (1 - t),
    "constant": lambda t: torch.full_like(t, LAM),
    "callable": lambda t: LAM * (0.5 + t.square()),
}


def _terms(eqm, seed):
    """``(x1, x0, training_losses)`` on a float64 batch ``(B, 3)`` drawn from ``seed``,
    the loss's own draws from ``seed + 1``."""
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randn(B, 3, generator=gen, dtype=F64)
    x0 = torch.randn(B, 3, generator=gen, dtype=F64)
    terms = eqm.training_losses(x1, x0=x0, generator=torch.Generator().manual_seed(seed + 1))
    return x1, x0, terms


@pytest.mark.parametrize("family", sorted(HAND))
def test_target_and_loss_follow_the_hand_written_ct(family):
    ct = (lambda t: 0.5 + t.square()) if family == "callable" else family
    eqm = EquilibriumMatchingLoss(
        Zero(),
        ct=ct,
        ct_threshold=A,
        ct_multiplier=LAM,
        coupling="independent",
        t_sampler=_times,
        time_invariant=False,
        dtype=F64,
    )
    x1, x0, terms = _terms(eqm, seed=0)
    t = _times(B, dtype=F64)
    c = HAND[family](t).reshape(-1, 1)
    u = x1 - x0  # linear path: x_t = t x1 + (1 - t) x0
    torch.testing.assert_close(terms["target"], -c * u, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms["loss"], (c * u).square().mean(1), rtol=1e-12, atol=1e-12)


class Affine(nn.Module):
    """A fixed, non-trivial prediction ``0.3 x - 0.2``."""

    def forward(self, x, t):
        return 0.3 * x - 0.2


@pytest.mark.parametrize("prediction", ["noise", "score"])
def test_noise_and_score_targets_of_the_linear_path(prediction):
    """Linear path, $\\sigma_t = 1 - t$: the noise target is $x_0$, the score target
    $\\nabla\\log p(x_t \\mid x_1) = -x_0/\\sigma_t$; unweighted, the per-sample losses are
    $\\overline{(f - x_0)^2}$ and $\\sigma_t^2\\,\\overline{(f + x_0/\\sigma_t)^2}$."""
    eqm = EquilibriumMatchingLoss(
        Affine(),
        prediction=prediction,
        coupling="independent",
        t_sampler=_times,
        time_invariant=False,
        dtype=F64,
    )
    x1, x0, terms = _terms(eqm, seed=2)
    t = _times(B, dtype=F64).reshape(-1, 1)
    sigma = 1 - t
    pred = 0.3 * (t * x1 + sigma * x0) - 0.2
    target = x0 if prediction == "noise" else -x0 / sigma
    scale = 1.0 if prediction == "noise" else sigma.square()
    torch.testing.assert_close(terms["target"], target, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        terms["loss"], (scale * (pred - target).square()).mean(1), rtol=1e-10, atol=1e-12
    )
