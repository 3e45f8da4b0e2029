"""The public extension hook of `BaseSyntheticDataset`: ``generate_data(generator)``.

A subclass implements ``generate_data``; torchebm 0.8.9's ``_generate_data(self)`` (no
generator: it drew from the global RNG, which 0.8.9 reseeded with ``seed``) and the
``_generate_data(self, generator)`` of the first workspace release keep working. The
references are independent of the library: a ``torch.Generator`` seeded by hand, and
0.8.9's own recipe (``torch.manual_seed(seed)``, then the subclass's draw).
"""

from __future__ import annotations

import pytest
import torch

from torchebm.datasets import (
    BaseSyntheticDataset,
    GaussianMixtureDataset,
    TwoMoonsDataset,
    make_gaussian_mixture,
    make_two_moons,
)
from torchebm.datasets._datasets import _MakerDataset

N = 64


class Public(BaseSyntheticDataset):
    def generate_data(self, generator):
        return torch.randn(self.n_samples, 2, generator=generator)


class Legacy089(BaseSyntheticDataset):  # torchebm 0.8.9: no generator argument
    def _generate_data(self):
        return torch.randn(self.n_samples, 2)


class LegacyWithGenerator(BaseSyntheticDataset):  # the first workspace release's hook
    def _generate_data(self, generator):
        return torch.randn(self.n_samples, 2, generator=generator)


class Neither(BaseSyntheticDataset):
    pass


def _randn(seed: int) -> torch.Tensor:
    return torch.randn(N, 2, generator=torch.Generator().manual_seed(seed))


def test_public_hook_draws_from_the_seeded_generator():
    state = torch.get_rng_state()
    ds = Public(N, seed=7)
    assert torch.equal(ds.get_data(), _randn(7))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not read
    g = torch.Generator().manual_seed(7)
    assert torch.equal(Public(N, generator=g).get_data(), _randn(7))


def test_089_hook_without_generator_reproduces_089_seeding():
    torch.manual_seed(7)  # what 0.8.9 did: reseed the global RNG, then draw
    expected = torch.randn(N, 2)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    ds = Legacy089(N, seed=7)
    assert torch.equal(ds.get_data(), expected)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG left as it was
    ds.regenerate()
    assert torch.equal(ds.get_data(), expected)
    ds.regenerate(seed=8)
    torch.manual_seed(8)
    assert torch.equal(ds.get_data(), torch.randn(N, 2))


def test_089_hook_unseeded_draws_from_the_global_rng():
    torch.manual_seed(5)
    ds = Legacy089(N)
    torch.manual_seed(5)
    assert torch.equal(ds.get_data(), torch.randn(N, 2))


def test_089_hook_with_a_generator_is_reproducible_and_advances_it():
    a = Legacy089(N, generator=torch.Generator().manual_seed(3)).get_data()
    g = torch.Generator().manual_seed(3)
    b = Legacy089(N, generator=g).get_data()
    assert torch.equal(a, b)
    assert not torch.equal(Legacy089(N, generator=g).get_data(), b)  # the stream moved on


def test_089_hook_with_numpy_is_reproducible_and_leaves_numpy_alone():
    np = pytest.importorskip("numpy")

    class NumpyData(BaseSyntheticDataset):
        def _generate_data(self):
            return np.random.randn(self.n_samples, 2)

    np.random.seed(4)
    expected = np.random.randn(N, 2)
    np.random.seed(99)
    before = np.random.get_state()[1].copy()
    ds = NumpyData(N, seed=4, dtype=torch.float64)
    assert torch.equal(ds.get_data(), torch.from_numpy(expected))
    assert (np.random.get_state()[1] == before).all()


def test_first_release_hook_with_generator():
    assert torch.equal(LegacyWithGenerator(N, seed=7).get_data(), _randn(7))
    g = torch.Generator().manual_seed(7)
    assert torch.equal(LegacyWithGenerator(N, generator=g).get_data(), _randn(7))


def test_neither_hook_is_a_clear_error():
    with pytest.raises(TypeError, match=r"Neither must implement generate_data\(self, generator\)"):
        Neither(N)
    with pytest.raises(TypeError, match="BaseSyntheticDataset must implement generate_data"):
        BaseSyntheticDataset(N)


def test_public_and_old_paths_give_the_same_seeded_data():
    for seed in (0, 1, 2**40):
        new = Public(N, seed=seed)
        old = LegacyWithGenerator(N, seed=seed)
        assert torch.equal(new.get_data(), old.get_data())
        new.regenerate()
        assert torch.equal(new.get_data(), _randn(seed))


def test_library_datasets_implement_only_the_public_hooks():
    # `_generate_data` exists only for a 0.8.9 subclass's super() call (below): the
    # built-ins draw through `generate_data` and their private generator
    assert "_extra_repr" not in vars(_MakerDataset)
    g = torch.Generator().manual_seed(3)
    expected = make_gaussian_mixture(N, n_components=4, generator=g, dtype=torch.float64)
    got = GaussianMixtureDataset(N, n_components=4, seed=3, dtype=torch.float64).get_data()
    assert torch.equal(got, expected)
    ds = GaussianMixtureDataset(N, n_components=4, seed=3)
    assert ds.extra_repr() == {"n_components": 4, "std": 0.05, "radius": 1.0}


def test_extra_repr_of_a_user_subclass_appears_in_repr():
    class Scaled(Public):
        scale = 2.5

        def extra_repr(self):
            return {"scale": self.scale}

    assert (
        repr(Scaled(4, seed=0)) == "Scaled(n_samples=4, scale=2.5, device=cpu, dtype=torch.float32)"
    )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_089_hook_drawing_on_cuda_reproduces_089_seeding():
    class OnDevice(BaseSyntheticDataset):
        def _generate_data(self):
            return torch.randn(self.n_samples, 2, device=self.device)

    torch.manual_seed(7)
    expected = torch.randn(N, 2, device="cuda")
    torch.cuda.manual_seed(123)
    state = torch.cuda.get_rng_state()
    ds = OnDevice(N, seed=7, device="cuda")
    assert torch.equal(ds.get_data(), expected)
    assert torch.equal(torch.cuda.get_rng_state(), state)
    g = torch.Generator(device="cuda").manual_seed(0)
    assert ds.get_data().device.type == "cuda"
    assert OnDevice(N, generator=g, device="cuda").get_data().shape == (N, 2)


def test_a_torchebm_08_override_of_a_library_dataset_is_called():
    """0.8.9 code subclassing a built-in dataset overrides ``_generate_data``: it is the one
    that runs, not the built-in ``generate_data`` under it."""
    from torchebm.datasets import TwoMoonsDataset

    class Fixed(TwoMoonsDataset):
        def _generate_data(self):
            return torch.ones(self.n_samples, 2)

    assert torch.equal(Fixed(n_samples=5, seed=0).get_data(), torch.ones(5, 2))


def test_a_089_subclass_extending_a_built_in_draw_calls_it_through_super():
    # 0.8.9's built-ins drew in `_generate_data(self)`; a subclass calling
    # super()._generate_data() raised AttributeError here. It gets the built-in draw from
    # the global RNG seeded with `seed` (on a forked state, as every 0.8.9 hook runs)
    class Scaled(TwoMoonsDataset):
        def __init__(self, n_samples=100, scale=2.0, seed=None):
            self.scale = scale
            super().__init__(n_samples=n_samples, seed=seed)

        def _generate_data(self):
            return super()._generate_data() * self.scale

    state = torch.get_rng_state()
    got = Scaled(100, seed=5).get_data()
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is as it was
    torch.manual_seed(5)
    want = make_two_moons(100, dtype=torch.float64).float() * 2.0
    torch.set_rng_state(state)
    assert torch.equal(got, want)
    assert torch.equal(Scaled(100, seed=5).get_data(), got)


def test_a_hook_with_a_generator_gets_the_built_in_draw_from_it_through_super():
    # `_generate_data(self, generator=None)` calling super()._generate_data() without the
    # generator drew from the unseeded global RNG: another draw on each run
    class Scaled(TwoMoonsDataset):
        def _generate_data(self, generator=None):
            return super()._generate_data() * 2.0

    state = torch.get_rng_state()
    got = Scaled(50, seed=2).get_data()
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(Scaled(50, seed=2).get_data(), got)
    g = torch.Generator().manual_seed(2)
    assert torch.equal(got, make_two_moons(50, generator=g, dtype=torch.float64).float() * 2.0)


def test_only_the_library_module_s_hook_is_not_an_override():
    # a user's module named torchebm.datasets.<plugin> overrides like any other
    from torchebm.datasets._base import _hook_name

    class Plugin(TwoMoonsDataset):
        def _generate_data(self):
            return torch.zeros(self.n_samples, 2)

    Plugin.__module__ = "torchebm.datasets.my_plugin"
    assert _hook_name(Plugin) == "_generate_data"
    assert torch.equal(Plugin(5, seed=0).get_data(), torch.zeros(5, 2))
    assert _hook_name(TwoMoonsDataset) == "generate_data"
