"""AIS with MALA transitions evaluates the target once per proposal.

A MALA step needs $E$ and $\\nabla E$ at the current chains and at the proposal; the log-weight
update of the next temperature needs $E$ at the chains again. The chains are always the
proposal (accepted) or the previous chains (rejected), whose values the last step computed,
so a run of $K$ temperatures and $n$ steps each evaluates the target
$1 + (K - 1) n$ times for the energy and as many for the gradient (it evaluated
$K + 2 (K - 1) n$ energies and $2 (K - 1) n$ gradients before).

The reference is an AIS-MALA loop written here in float64 from Neal (2001) and Roberts &
Tweedie (1996), drawing the same random numbers in the same order: log-weights and chains
agree to rounding (1e-12).
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.samplers import AnnealedImportanceSampling

F64 = torch.float64
K, B, D, EPS = 12, 64, 2, 0.3


class _Counting(torch.nn.Module):
    """$E(x) = \\tfrac12\\lvert x - 1\\rvert^2 + \\sin(2 x_1)$ with its own gradient; counts calls."""

    def __init__(self):
        super().__init__()
        self.n_energy = self.n_gradient = 0

    def forward(self, x):
        self.n_energy += 1
        return 0.5 * ((x - 1.0) ** 2).sum(1) + torch.sin(2 * x[:, 0])

    def gradient(self, x):
        self.n_gradient += 1
        g = x - 1.0
        g[:, 0] += 2 * torch.cos(2 * x[:, 0])
        return g


def _reference(
    n_steps: int, gen: torch.Generator, model: _Counting, k: int = K, dtype=F64
) -> tuple[torch.Tensor, torch.Tensor]:
    """AIS-MALA from N(0, I) to e^{-E} along the sigmoid schedule of AIS (its betas): every
    energy and gradient evaluated where it is used."""
    betas = AnnealedImportanceSampling(model, n_intermediate=k).betas.tolist()

    def energy(x, b):
        return (1 - b) * 0.5 * (x**2).sum(1) + b * model(x)

    def grad(x, b):
        return (1 - b) * x + b * model.gradient(x)

    x = torch.randn(B, D, generator=gen, dtype=dtype)
    log_w = torch.zeros(B, dtype=F64)
    for i in range(1, len(betas)):
        log_w += (betas[i] - betas[i - 1]) * (0.5 * (x**2).sum(1) - model(x)).to(F64)
        if i == len(betas) - 1:
            break
        b = betas[i]
        for _ in range(n_steps):
            y = (
                x
                - EPS * grad(x, b)
                + math.sqrt(2 * EPS) * torch.randn(B, D, generator=gen, dtype=x.dtype)
            )
            fwd = ((y - x + EPS * grad(x, b)) ** 2).sum(1) / (4 * EPS)
            bwd = ((x - y + EPS * grad(y, b)) ** 2).sum(1) / (4 * EPS)
            log_a = energy(x, b) - energy(y, b) - bwd + fwd
            u = torch.rand(B, generator=gen, dtype=x.dtype)
            x = torch.where((torch.log1p(-u) <= log_a)[:, None], y, x)
    return log_w, x


def _matches_reference(model, reference, n_steps=1, k=K, dtype=F64, seed=3):
    """AIS-MALA on ``model`` against `_reference` on ``reference`` (the same energy), to
    rounding; returns the `AISResult`."""
    ais = AnnealedImportanceSampling(
        model, n_intermediate=k, transition="mala", step_size=EPS, n_transition_steps=n_steps
    )
    r = ais.estimate(B, D, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    log_w, x = _reference(n_steps, torch.Generator().manual_seed(seed), reference, k, dtype)
    torch.testing.assert_close(r.log_weights, log_w, rtol=0, atol=1e-12)
    torch.testing.assert_close(r.samples, x, rtol=0, atol=1e-12)
    return r


@pytest.mark.parametrize("n_steps", [1, 3])
def test_mala_matches_a_hand_written_loop_with_one_evaluation_per_proposal(n_steps):
    model = _Counting()
    _matches_reference(model, _Counting(), n_steps)
    calls = 1 + (K - 1) * n_steps
    assert (model.n_energy, model.n_gradient) == (calls, calls)


def test_mala_chains_promoted_by_a_wider_gradient_are_evaluated_in_their_dtype():
    # a float64 gradient promotes float32 chains at the first proposal; the energies of the
    # next log-weights are then those of the float64 chains (a rejected chain's float32
    # energy, kept, would differ by float32 rounding)
    class Wide(_Counting):
        def gradient(self, x):
            return super().gradient(x).double()

    r = _matches_reference(Wide(), Wide(), k=4, dtype=torch.float32, seed=0)
    assert r.samples.dtype == F64


def test_mala_with_a_model_that_reuses_its_output_buffers():
    # a CUDA-graphed callable returns the same output tensors at every call: the values kept
    # at the chains must be copies, not the model's buffers that the proposal's call rewrites
    class Static(_Counting):
        def forward(self, x):
            e = super().forward(x)
            self.e_out = getattr(self, "e_out", torch.empty_like(e))
            return self.e_out.copy_(e)

        def gradient(self, x):
            g = super().gradient(x)
            self.g_out = getattr(self, "g_out", torch.empty_like(g))
            return self.g_out.copy_(g)

    _matches_reference(Static(), _Counting(), seed=4)


def test_mala_promoted_chains_beside_chains_of_weight_zero():
    # the chains of weight 0 (outside the support x_1 < 1) are not moved; the others are
    # promoted to float64 by the gradient: the result holds both (it raised in index_put)
    class WideBounded(_Counting):
        def forward(self, x):
            e = super().forward(x)
            return torch.where(x[:, 0] < 1.0, e, torch.full_like(e, math.inf))

        def gradient(self, x):
            return super().gradient(x).double()

    gen = torch.Generator().manual_seed(0)
    start = torch.randn(B, D, generator=torch.Generator().manual_seed(0))
    ais = AnnealedImportanceSampling(WideBounded(), n_intermediate=3, transition="mala")
    r = ais.estimate(B, D, dtype=torch.float32, generator=gen)
    dead = start[:, 0] >= 1.0
    assert 0 < int(dead.sum()) < B and r.samples.dtype == F64
    assert torch.equal(r.log_weights == -math.inf, dead)
    assert torch.equal(r.samples[dead], start[dead].double())
    assert (r.samples[~dead, 0] < 1.0).all()
