"""Datasets in ``DataLoader`` workers and pickles: same points everywhere, generator kept.

torch pickles a ``torch.Generator`` through a temporary shared-memory tensor that is freed
before a ``spawn``/``forkserver`` worker reads it, so a dataset built with ``generator=``
killed every such worker (the default start method on macOS and Windows).
"""

from __future__ import annotations

import pickle

import torch
from torch.utils.data import DataLoader

from torchebm.datasets import EightGaussiansDataset, TwoMoonsDataset


def test_spawn_workers_yield_the_parents_points():
    ds = TwoMoonsDataset(n_samples=48, generator=torch.Generator().manual_seed(3))
    loader = DataLoader(ds, batch_size=8, num_workers=2, multiprocessing_context="spawn")
    got = torch.cat(list(loader))
    # each worker yields its batches from its copy of the parent's points: the rows come
    # back in order and bit for bit (nothing is redrawn in a worker)
    assert torch.equal(got, ds.get_data())


def test_pickled_generator_continues_the_same_stream():
    g = torch.Generator().manual_seed(11)
    ds = EightGaussiansDataset(n_samples=32, generator=g)
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.generator is not g
    # the reference: the generator's own next draw, from an independent clone of its state
    ref = torch.Generator()
    ref.set_state(g.get_state())
    expected = EightGaussiansDataset(n_samples=32, generator=ref).get_data()
    copy.regenerate()
    assert torch.equal(copy.get_data(), expected)
    ds.regenerate()  # the original's stream is its own: it advances independently
    assert torch.equal(ds.get_data(), expected)


class _Pickled089:
    """A dataset's state laid out as torchebm 0.8.9 pickled it: no ``generator``, no
    ``shuffle`` (its moons were not shuffled), ``device=None`` unless given."""

    def __init__(self, ds, device=None):
        self.ds, self.device = ds, device

    def __reduce__(self):
        state = {k: v for k, v in vars(self.ds).items() if k not in ("generator", "shuffle")}
        state["device"] = self.device
        return (object.__new__, (type(self.ds),), state)


def test_a_dataset_pickled_by_089_draws_again_and_prints():
    """Loading worked, but ``repr`` and ``regenerate`` raised ``AttributeError`` (no
    ``shuffle``, no ``generator``)."""
    old = pickle.loads(pickle.dumps(_Pickled089(TwoMoonsDataset(n_samples=40, seed=3))))
    assert "shuffle=False" in repr(old)
    assert old.device == torch.device("cpu") and old.generator is None
    old.regenerate()  # seeded: this version's points for that seed, in 0.8.9's order
    expected = TwoMoonsDataset(n_samples=40, seed=3, shuffle=False).get_data()
    assert torch.equal(old.get_data(), expected)
    named = _Pickled089(TwoMoonsDataset(n_samples=8, seed=1), device="cpu")  # as given
    assert pickle.loads(pickle.dumps(named)).device == torch.device("cpu")
    unseeded = pickle.loads(pickle.dumps(_Pickled089(EightGaussiansDataset(n_samples=16))))
    torch.manual_seed(5)
    unseeded.regenerate()  # from the global RNG, as 0.8.9 drew
    torch.manual_seed(5)
    assert torch.equal(unseeded.get_data(), EightGaussiansDataset(n_samples=16).get_data())
