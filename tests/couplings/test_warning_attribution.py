"""The auction's round-cap warning: at every capped call (not once per process), at the caller."""

from __future__ import annotations

import sys
import warnings

import torch

from torchebm.couplings import auction_assignment


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
