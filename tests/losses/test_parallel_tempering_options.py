"""ParallelTemperingCD under non-default options, against closed forms: the swap schedule
(``swap_every``), the swap probability with ``base_temperature``, and the tempered targets
$p^{1/T_r}$ through a Metropolis-exact sampler."""

from __future__ import annotations

import math

import pytest
import torch
from _support.dtypes import default_dtype

from torchebm.core import GaussianModel
from torchebm.losses import ParallelTemperingCD


def gen(seed):
    return torch.Generator().manual_seed(seed)


class CountingIdentity:
    """A 'sampler' that leaves its chains unchanged and counts the steps it was asked for."""

    def __init__(self, model):
        self.model = model
        self.steps = 0

    def sample(self, x=None, n_steps=1, **kwargs):
        self.steps += n_steps
        return x.clone()


def _pt_counting_swaps(k_steps, swap_every, **kwargs):
    """A PT loss whose swap rounds are recorded as the sampler steps done before each."""
    model = GaussianModel(torch.zeros(1), torch.eye(1))
    sampler = CountingIdentity(model)
    pt = ParallelTemperingCD(
        model, sampler, temperatures=(1.0, 2.0), k_steps=k_steps, swap_every=swap_every,
        n_chains=4, **kwargs,
    )  # fmt: skip
    at: list[int] = []
    swap = pt._swap

    def recorded(chains, generator, *rest):
        at.append(sampler.steps)
        return swap(chains, generator, *rest)

    pt._swap = recorded
    return pt, at


def test_swap_rounds_come_every_swap_every_sampler_steps_across_calls():
    # documented: a swap round after every `swap_every` sampler steps. Calls of fewer steps
    # used to swap at the end of every call (k_steps=1, swap_every=10: 20 rounds in 20 steps)
    for k_steps, swap_every in ((1, 10), (3, 5), (7, 5), (10, 5), (4, 1)):
        pt, at = _pt_counting_swaps(k_steps, swap_every)
        for _ in range(20):
            pt.negative_phase(torch.zeros(4, 1))
        total = 20 * k_steps
        expected = list(range(swap_every, total + 1, swap_every))
        assert at == expected, (k_steps, swap_every, at)


def test_a_resumed_loss_keeps_the_swap_phase():
    pt, at = _pt_counting_swaps(3, 5)
    for _ in range(3):  # 9 steps: one round (after step 5), 4 steps since
        pt.negative_phase(torch.zeros(4, 1))
    resumed, at_resumed = _pt_counting_swaps(3, 5)
    resumed.load_state_dict(pt.state_dict())
    resumed.negative_phase(torch.zeros(4, 1))  # steps 10..12: a round after the first
    assert at == [5] and at_resumed == [1]


def test_swap_probability_is_the_closed_form_with_a_base_temperature():
    # every chain of replica 0 at x = 1 (E = 1/2), of replica 1 at x = 2 (E = 2): each swap
    # is accepted with p = min(1, exp((b0 - b1)(E0 - E1))), b_r = 1 / (T_r T0), so the
    # accepted fraction of n chains is Binomial(n, p) / n
    n, temps, t0 = 20_000, (1.0, 1.5), 0.5
    model = GaussianModel(torch.zeros(1), torch.eye(1))

    def loss():  # swap rounds alternate even/odd pairs: a fresh loss tries the pair (0, 1)
        return ParallelTemperingCD(
            model, CountingIdentity(model), temperatures=temps, k_steps=1, base_temperature=t0
        )

    pt = loss()
    b0, b1 = (1.0 / (t * t0) for t in temps)
    p = math.exp((b0 - b1) * (0.5 - 2.0))
    tol = 4 * math.sqrt(p * (1 - p) / n)
    assert tol < 0.05 * p  # a 5% error of the probability fails
    pt.tempered_chains = torch.stack([torch.full((n, 1), 1.0), torch.full((n, 1), 2.0)])
    pt.negative_phase(torch.zeros(n, 1), generator=gen(0))
    swapped = (pt.tempered_chains[0, :, 0] == 2.0).double().mean().item()
    assert abs(swapped - p) < tol, (swapped, p, tol)
    assert pt.swap_acceptance[0].item() == pytest.approx(swapped, rel=1e-6)  # float32
    # the other way round (the colder replica holds the higher energy) always swaps
    pt = loss()
    pt.tempered_chains = torch.stack([torch.full((n, 1), 2.0), torch.full((n, 1), 1.0)])
    pt.negative_phase(torch.zeros(n, 1), generator=gen(1))
    assert (pt.tempered_chains[0] == 1.0).all()


class Shrink:
    """A deterministic 'sampler' (x <- 0.9 x): only the swaps draw random numbers."""

    def __init__(self, model):
        self.model = model

    def sample(self, x=None, n_steps=1, **kwargs):
        return x * 0.9


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_swap_draws_do_not_depend_on_the_global_default_dtype(dtype):
    """The swap uniforms are drawn in the chains' precision: the same seed gives the same
    swaps whatever `torch.set_default_dtype` says (they followed the global default, so a
    float32 run changed its swaps when a script set float64, and float64 chains got float32
    uniforms)."""

    def run():
        model = GaussianModel(torch.zeros(1), torch.eye(1), dtype=dtype)
        pt = ParallelTemperingCD(
            model, Shrink(model), temperatures=(1.0, 1.5, 2.5), k_steps=1, swap_every=1,
            n_chains=64,
            dtype=dtype,
        )  # fmt: skip
        g = gen(3)
        x = torch.randn(64, 1, generator=g, dtype=dtype)
        outs = [pt.negative_phase(x, generator=g) for _ in range(4)]
        return torch.stack(outs), pt.swap_acceptance.clone()

    with default_dtype(torch.float32):
        a, acc_a = run()
    with default_dtype(torch.float64):
        b, acc_b = run()
    # a pair with some swaps accepted and some not: the draws decide
    assert bool(((acc_a > 0) & (acc_a < 1)).any()), acc_a
    assert torch.equal(a, b) and torch.equal(acc_a, acc_b)
