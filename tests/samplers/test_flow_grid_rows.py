"""FlowSampler's per-grid-time views (the expanded times, the SDE table) are made a chunk at
a time: all of them at once held 0.6-2.5 kB per grid step (240 MiB for 100,000 SDE steps)."""

from __future__ import annotations

import torch

from torchebm.samplers import FlowSampler
from torchebm.samplers._flow import _GridRows


def test_rows_are_the_unbound_rows_and_one_chunk_is_held():
    a, b = torch.arange(10.0), torch.arange(20.0).reshape(10, 2)
    rows, pairs = _GridRows(a, chunk=4), _GridRows(a, b, chunk=4)
    for i in [0, 3, 4, 9, 5, 1, -1, -10]:
        assert torch.equal(rows[i], a[i])
        assert torch.equal(pairs[i][0], a[i]) and torch.equal(pairs[i][1], b[i])
        assert len(rows.rows) <= 4 and len(pairs.rows) <= 4
    assert len(rows) == 10


def test_a_long_sde_run_holds_one_chunk_of_views():
    sampler = FlowSampler(lambda x, t: -x, mode="sde")
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    seen = []

    class Probe:  # records the state's tables at the last step
        def __init__(self, sampler):
            self.step = sampler.step

        def __call__(self, state, ctx):
            seen.append((len(state.t_batch.rows), len(state.sde_table.rows)))
            return self.step(state, ctx)

    sampler.step = Probe(sampler)
    out = sampler.sample(x=x, n_steps=5000, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    assert max(max(s) for s in seen) <= 1024
