"""ParallelTemperingCD keeps each call's temperatures to itself: a call nested inside
another's sampler run (from the model's forward), or one running in another thread at
the same time, neither replaces the other call's inverse temperatures nor un-tempers its
sampler. Reference: the tempered Langevin recursion written out by hand in float64."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from _support.losses import Quadratic, TinyLangevin

from torchebm.losses import ParallelTemperingCD

TEMPS, N, D, K, H, W = (1.0, 2.0, 4.0), 8, 2, 4, 0.05, 0.7


class Hooked(Quadratic):
    """The quadratic energy; ``hooks[rows]()`` runs (once) at its first evaluation on a
    batch of ``rows`` rows in the thread that armed it."""

    def __init__(self) -> None:
        super().__init__(w=W)
        self.hooks: dict[tuple[int, int], object] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hook = self.hooks.pop((threading.get_ident(), x.shape[0]), None)
        if hook is not None:
            hook()
        return super().forward(x)


def _loss(model: Hooked, chains: torch.Tensor) -> ParallelTemperingCD:
    # swap_every > K: no swap round, so a call's result is its Langevin recursion alone
    loss = ParallelTemperingCD(model, TinyLangevin(model, step_size=H), TEMPS, K, swap_every=99)
    loss.tempered_chains = chains.clone()
    return loss


def _by_hand(chains: torch.Tensor, seed: int) -> torch.Tensor:
    """``x <- x - h w x / T_r + sqrt(2h) xi`` per replica, K steps, in float64 (the noise
    drawn as TinyLangevin draws it): every replica, ``(R, n, D)``."""
    g = torch.Generator().manual_seed(seed)
    x = chains.double()
    beta = torch.tensor([1.0 / t for t in TEMPS], dtype=torch.float64)[:, None, None]
    for _ in range(K):
        xi = torch.randn((len(TEMPS) * x.shape[1], D), generator=g).double()
        x = x - H * W * beta * x + math.sqrt(2 * H) * xi.reshape(x.shape)
    return x


def _chains(n: int, seed: int) -> torch.Tensor:
    return torch.randn(len(TEMPS), n, D, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a.double(), b, rtol=0, atol=1e-5)  # float32 rounding of K steps


def test_a_nested_call_keeps_the_outer_calls_temperatures():
    model, outer_chains, inner_chains = Hooked(), _chains(N, 0), _chains(N // 2, 1)
    loss = _loss(model, outer_chains)
    inner = []

    def nested() -> None:  # a call on another batch size, from inside the outer sampler run
        loss.tempered_chains = inner_chains.clone()
        loss(torch.zeros(N // 2, D), generator=torch.Generator().manual_seed(2))
        inner.append(loss.tempered_chains)

    model.hooks[(threading.get_ident(), len(TEMPS) * N)] = nested
    _, negatives = loss(torch.zeros(N, D), generator=torch.Generator().manual_seed(3))
    assert len(inner) == 1
    assert _close(inner[0], _by_hand(inner_chains, 2))
    assert _close(loss.tempered_chains, _by_hand(outer_chains, 3))
    assert torch.equal(negatives, loss.tempered_chains[0])
    assert loss.sampler.model is model


@pytest.mark.parametrize("shared", ["one loss", "two losses, one sampler"])
def test_calls_in_two_threads_keep_their_temperatures_and_restore_the_sampler(shared):
    """Thread a enters its negative phase and waits (in the model) for b to get inside its
    own; b then waits (in the model) for a to end. Two PT-CD losses sharing one sampler
    interleaved so: a restored the sampler's model under b, which ran untempered (or failed,
    "expected None" rows), and the sampler could stay pointed at a tempered model. Calls
    on one sampler take turns now: b gets in once a is out (a waits 0.5 s for it in vain)."""
    model, chains = Hooked(), _chains(N, 0)
    first = _loss(model, chains)
    second = first
    if shared != "one loss":
        second = ParallelTemperingCD(model, first.sampler, TEMPS, K, swap_every=99)
        second.tempered_chains = chains.clone()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    out: dict[str, object] = {}

    def run(name: str, loss, seed: int, pause) -> None:
        model.hooks[(threading.get_ident(), len(TEMPS) * N)] = pause
        try:
            loss(torch.zeros(N, D), generator=torch.Generator().manual_seed(seed))
            out[name] = loss.tempered_chains  # every replica (the hot ones show the tempering)
        except Exception as err:  # noqa: BLE001 - reported by the assertion below
            out[name] = err

    a = threading.Thread(target=run, args=("a", first, 3, lambda: (a_in.set(), b_in.wait(0.5))))
    b = threading.Thread(target=run, args=("b", second, 4, lambda: (b_in.set(), a_out.wait(10))))
    a.start()
    assert a_in.wait(10)
    b.start()
    a.join(10)
    a_out.set()
    b.join(10)
    assert not a.is_alive() and not b.is_alive()
    assert isinstance(out["a"], torch.Tensor) and isinstance(out["b"], torch.Tensor), out
    assert _close(out["a"], _by_hand(chains, 3))
    assert _close(out["b"], _by_hand(chains, 4))
    assert first.sampler.model is model


def test_a_sampler_that_cannot_be_hashed_works():
    # the per-sampler lock table was a WeakKeyDictionary: a user's sampler that is a
    # dataclass (eq, so no __hash__) failed with "unhashable type", as it did not before
    class Unhashable(TinyLangevin):
        __hash__ = None  # type: ignore[assignment]

    model, chains = Hooked(), _chains(N, 0)
    loss = ParallelTemperingCD(model, Unhashable(model, step_size=H), TEMPS, K, swap_every=99)
    loss.tempered_chains = chains.clone()
    loss(torch.zeros(N, D), generator=torch.Generator().manual_seed(3))
    assert _close(loss.tempered_chains, _by_hand(chains, 3))
