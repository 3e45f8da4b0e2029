"""The ``grad_tol`` stop rule of the descent samplers at non-finite gradients and restarts.

A tilt $E(x) = -\\sum x$ (gradient $-1$, norm $\\sqrt d$) whose gradient is non-finite past
$x = A$: chains climb at a known rate, so every iterate has a closed form.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from torchebm.core import BaseModel, HarmonicModel
from torchebm.samplers import GradientDescentSampler, NesterovSampler

A = 1.0


class Tilt(BaseModel):
    """$E = -\\sum x$ where every coordinate is $\\le A$; the gradient is `bad` past $A$."""

    def __init__(self, bad: float):
        super().__init__(dtype=torch.float64)
        self.bad = bad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = -x.flatten(1).sum(1)
        return torch.where((x.flatten(1) > A).any(1), torch.full_like(e, self.bad), e)

    def gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        return torch.where(x > A, torch.full_like(x, self.bad), -torch.ones_like(x))


def _first_nan_lookahead(eta: float, mu: float) -> int:
    """The step whose Nesterov look-ahead $x_k + \\mu v_k$ first passes $A$ (exact recursion)."""
    x = v = 0.0
    for k in range(1, 100):
        if x + mu * v > A:
            return k
        v = mu * v + eta
        x += v
    raise AssertionError("the look-ahead never passes A")


def test_a_nan_gradient_does_not_stop_a_nesterov_chain():
    """NaN < grad_tol is false: the chain diverges at that step and is reported. It used to be
    frozen at the finite look-ahead point with a NaN velocity; with the convergence poll on
    that step the call returned a finite x, no warning and `divergent_chains` all False."""
    eta, mu = 0.1, 0.5
    k = _first_nan_lookahead(eta, mu)
    sampler = NesterovSampler(Tilt(math.nan), eta, mu, dtype=torch.float64, grad_tol=1e-3)
    sampler.convergence_check_every = 1
    x0 = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traj = sampler.sample(x=x0, n_steps=3 * k, return_trajectory=True, nan_check_every=1)
    assert torch.isfinite(traj[0, : k - 1]).all()
    assert torch.isnan(traj[0, k - 1 :]).all()
    assert sampler.divergent_chains.tolist() == [True]
    assert [f"0 (step {k})" in str(w.message) for w in caught] == [True]


def test_steps_used_counts_every_update_across_restarts():
    """|grad| = 2 >= grad_tol everywhere it is finite, so no chain ever stops: after k steps
    each chain used k updates, whether or not `nan_policy="resample"` restarted it (an
    infinite gradient past A sends x to inf, restarted at once). The count used to restart at 0."""
    eta, n = 0.3, 12
    sampler = GradientDescentSampler(Tilt(-math.inf), eta, dtype=torch.float64, grad_tol=0.5)
    starts = (0.0, 0.5, -5.0)
    x0 = torch.tensor(starts, dtype=torch.float64).reshape(3, 1, 1, 1).expand(3, 1, 2, 2).clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        traj, diag = sampler.sample(
            x=x0, n_steps=n, nan_policy="resample", return_trajectory=True, return_diagnostics=True
        )
    expected = torch.arange(1, n + 1).unsqueeze(1).expand(n, 3)
    assert torch.equal(diag["steps_used"], expected)
    # the iterates themselves: climb by eta from the start, back to it after passing A
    for c, start in enumerate(starts):
        x, rows = start, []
        for _ in range(n):
            x = start if x > A else x + eta
            rows.append(x)
        want = torch.tensor(rows, dtype=torch.float64)[:, None, None, None].expand(n, 1, 2, 2)
        assert float((traj[c] - want).abs().max()) < 1e-12
    assert sampler.divergent_chains.tolist() == [True, True, False]


def _moves(x0: torch.Tensor, traj: torch.Tensor) -> list[int]:
    """Per chain, the steps that changed its position (counted on the trajectory)."""
    path = torch.cat([x0.unsqueeze(1), traj], dim=1).flatten(2)
    return (path[:, 1:] != path[:, :-1]).any(2).sum(1).tolist()


@pytest.mark.parametrize("momentum", [None, 0.0, 0.3, 0.7])
def test_steps_used_counts_the_steps_that_moved_each_chain(momentum):
    """`steps_used` is the number of updates: steps that moved the chain, hand counted on the
    trajectory. Nesterov's stopping step moves the chain to its look-ahead point, which it
    used to leave out (7 and 8 for 8 and 9 moves at momentum 0.3; gradient descent's
    stopping step does not move a chain). Momentum 0 is gradient descent: same counts."""
    model = HarmonicModel()  # gradient x: chain 2 stops at its first step, never moving
    x0 = torch.tensor([[1.0], [4.0], [5e-4]], dtype=torch.float64)
    if momentum is None:
        sampler = GradientDescentSampler(model, 0.5, dtype=torch.float64, grad_tol=1e-3)
    else:
        sampler = NesterovSampler(model, 0.5, momentum, dtype=torch.float64, grad_tol=1e-3)
    traj, diag = sampler.sample(x=x0, n_steps=60, return_trajectory=True, return_diagnostics=True)
    used = diag["steps_used"][-1].tolist()
    assert used == _moves(x0, traj)
    if momentum in (None, 0.0):  # 0.5^k |x0| < 1e-3 first at k = 10 and 12 updates
        assert used == [10, 12, 0]
    else:
        assert used[2] == 0 and min(used[:2]) > 0
