"""The auction's round-cap warning: at every capped call of `auction_assignment` (not once
per process), at the caller; once per `ExactOTCoupling`, which counts its capped calls."""

from __future__ import annotations

import sys
import warnings

import torch

from torchebm.couplings import ExactOTCoupling, auction_assignment


def test_every_capped_auction_warns_at_the_call():
    gen = torch.Generator().manual_seed(0)
    costs = [torch.rand(n, n, generator=gen, dtype=torch.float64) for n in (40, 60)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        first = auction_assignment(costs[0], max_rounds=1)
        second = auction_assignment(costs[1], max_rounds=2)  # another cause: was not shown

    hits = [w for w in caught if "reached max_rounds" in str(w.message)]
    assert [str(w.message).split(";")[0] for w in hits] == [
        "auction_assignment reached max_rounds=1",
        "auction_assignment reached max_rounds=2",
    ]
    assert [(w.filename, w.lineno) for w in hits] == [(__file__, line), (__file__, line + 1)]
    for idx, n in ((first, 40), (second, 60)):  # still a permutation
        assert sorted(idx.tolist()) == list(range(n))


def test_exact_ot_coupling_warns_once_and_counts_capped_batches():
    # a training loop whose every batch hits the cap (tol far below float64 resolution, so
    # the auction cannot finish) warned at every batch; now once per coupling, and the
    # coupling counts the capped batches (reference: the per-call warnings of the function)
    ot = ExactOTCoupling(tol=1e-300)
    gen = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(16, 2, generator=gen), torch.randn(16, 2, generator=gen)) for _ in range(8)
    ]
    with warnings.catch_warnings(record=True) as ref:
        warnings.simplefilter("always")
        for x0, x1 in batches:
            auction_assignment(ot.compute_cost(x0, x1), tol=1e-300)
    n_capped = sum("reached max_rounds" in str(w.message) for w in ref)
    assert n_capped >= 2  # the case under test happens
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 2
        for x0, x1 in batches:
            out0, out1 = ot(x0, x1)
    hits = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(hits) == 1 and "capped_calls" in str(hits[0].message)
    assert (hits[0].filename, hits[0].lineno) == (__file__, line)
    assert ot.capped_calls == n_capped
    assert sorted(out1[:, 0].tolist()) == sorted(x1[:, 0].tolist())  # still a permutation
    assert ExactOTCoupling().capped_calls == 0  # per coupling object
