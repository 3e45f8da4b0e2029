"""Contract of every synthetic dataset: shapes, dtype/device, seeding, indexing, validation."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

import torchebm.datasets as D
from torchebm.datasets import (
    BaseSyntheticDataset,
    CheckerboardDataset,
    CircleDataset,
    EightGaussiansDataset,
    GaussianMixtureDataset,
    GridDataset,
    PinwheelDataset,
    SwissRollDataset,
    TwoMoonsDataset,
    TwoSpiralsDataset,
)

# (dataset class, functional twin, kwargs of the dataset besides n_samples)
CASES = [
    (GaussianMixtureDataset, D.make_gaussian_mixture, {"n_components": 4, "std": 0.1}),
    (EightGaussiansDataset, D.make_eight_gaussians, {}),
    (TwoMoonsDataset, D.make_two_moons, {"noise": 0.05}),
    (SwissRollDataset, D.make_swiss_roll, {}),
    (CircleDataset, D.make_circle, {}),
    (CheckerboardDataset, D.make_checkerboard, {}),
    (PinwheelDataset, D.make_pinwheel, {"n_classes": 3}),
    (TwoSpiralsDataset, D.make_two_spirals, {}),
]
IDS = [c[0].__name__ for c in CASES]
N = 257  # odd, and not a multiple of any component count


def build(cls, n=N, **kw):
    if cls is GridDataset:
        return GridDataset(n_samples_per_dim=9, **kw)
    params = dict(next(c[2] for c in CASES if c[0] is cls))
    params.update(kw)
    return cls(n_samples=n, **params)


ALL = [c[0] for c in CASES] + [GridDataset]
ALL_IDS = IDS + ["GridDataset"]


def test_exports():
    expected = {
        "GaussianMixtureDataset",
        "EightGaussiansDataset",
        "TwoMoonsDataset",
        "SwissRollDataset",
        "CircleDataset",
        "CheckerboardDataset",
        "PinwheelDataset",
        "GridDataset",
        "TwoSpiralsDataset",
        "BaseSyntheticDataset",
    }
    assert expected <= set(D.__all__)
    for name in D.__all__:
        assert hasattr(D, name)
    makers = {n for n in D.__all__ if n.startswith("make_")}
    assert len(makers) == 9


@pytest.mark.parametrize("cls", ALL, ids=ALL_IDS)
def test_shape_dtype_device_len(cls):
    ds = build(cls, seed=0)
    n = 81 if cls is GridDataset else N
    data = ds.get_data()
    assert isinstance(ds, torch.utils.data.Dataset)
    assert data.shape == (n, 2) and len(ds) == n
    assert data.dtype == torch.float32 and data.device.type == "cpu"
    assert torch.isfinite(data).all()
    ds64 = build(cls, seed=0, dtype=torch.float64, device="cpu")
    assert ds64.get_data().dtype == torch.float64
    # computed in float64 then cast: the float32 set is the rounded float64 set
    assert torch.equal(ds64.get_data().float(), data)


@pytest.mark.parametrize("cls", ALL, ids=ALL_IDS)
def test_seed_determinism_and_global_rng_untouched(cls):
    torch.manual_seed(1)
    state = torch.get_rng_state()
    a = build(cls, seed=7).get_data()
    assert torch.equal(torch.get_rng_state(), state), "a seeded dataset consumed the global RNG"
    torch.manual_seed(12345)  # a different global state must not change the data
    b = build(cls, seed=7).get_data()
    assert torch.equal(a, b)
    c = build(cls, seed=8).get_data()
    assert not torch.equal(a, c)


@pytest.mark.parametrize("cls", ALL, ids=ALL_IDS)
def test_generator_matches_seed_and_leaves_global_rng(cls):
    state = torch.get_rng_state()
    g = torch.Generator().manual_seed(11)
    a = build(cls, generator=g).get_data()
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, build(cls, seed=11).get_data())


@pytest.mark.parametrize("cls", ALL, ids=ALL_IDS)
def test_unseeded_uses_global_rng_like_torch(cls):
    torch.manual_seed(3)
    a = build(cls).get_data()
    torch.manual_seed(3)
    b = build(cls).get_data()
    assert torch.equal(a, b)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_functional_form_matches_dataset(case):
    cls, make, kw = case
    ds = cls(n_samples=N, seed=5, **kw)
    out = make(N, **kw, generator=torch.Generator().manual_seed(5), dtype=torch.float32)
    assert out.shape == (N, 2) and out.dtype == torch.float32
    assert torch.equal(out, ds.get_data())
    assert make(N, **kw, dtype=torch.float64).dtype == torch.float64
    assert make(10, **kw).dtype == torch.get_default_dtype()


def test_grid_functional_matches_dataset():
    ds = GridDataset(n_samples_per_dim=6, noise=0.1, seed=2)
    out = D.make_grid(6, noise=0.1, generator=torch.Generator().manual_seed(2), dtype=torch.float32)
    assert torch.equal(out, ds.get_data())


@pytest.mark.parametrize("cls", ALL, ids=ALL_IDS)
def test_getitem_negative_and_out_of_range(cls):
    ds = build(cls, seed=0)
    n = len(ds)
    data = ds.get_data()
    assert torch.equal(ds[0], data[0]) and ds[0].shape == (2,)
    assert torch.equal(ds[-1], data[n - 1])
    assert torch.equal(ds[-n], data[0])
    assert torch.equal(ds[torch.tensor(3)], data[3])
    assert torch.equal(ds[2:5], data[2:5])
    with pytest.raises(IndexError):
        ds[n]
    with pytest.raises(IndexError):
        ds[-n - 1]
    with pytest.raises(TypeError):
        ds[1.5]


@pytest.mark.parametrize("cls", ALL, ids=ALL_IDS)
def test_dataloader_batches(cls):
    ds = build(cls, seed=0)
    loader = DataLoader(ds, batch_size=32, shuffle=True, drop_last=True)
    batches = list(loader)
    assert len(batches) == len(ds) // 32
    assert all(b.shape == (32, 2) and b.dtype == torch.float32 for b in batches)


def test_regenerate():
    ds = TwoMoonsDataset(n_samples=100, seed=1)
    first = ds.get_data().clone()
    ds.regenerate()  # seeded: same points
    assert torch.equal(ds.get_data(), first)
    ds.regenerate(seed=2)
    assert torch.equal(ds.get_data(), TwoMoonsDataset(n_samples=100, seed=2).get_data())
    g = torch.Generator().manual_seed(0)
    ds_g = CircleDataset(n_samples=50, generator=g)
    before = ds_g.get_data().clone()
    ds_g.regenerate()  # generator-backed: continues its stream
    assert not torch.equal(before, ds_g.get_data())


def test_repr():
    r = repr(TwoMoonsDataset(n_samples=10, noise=0.1, seed=0))
    assert r.startswith("TwoMoonsDataset(n_samples=10, noise=0.1")
    assert "device=cpu" in r and "dtype=torch.float32" in r


def test_seed_doc_calls():
    dataset = TwoMoonsDataset(n_samples=5000)
    dataloader = DataLoader(dataset, batch_size=128, shuffle=True)
    assert next(iter(dataloader)).shape == (128, 2)

    data = GaussianMixtureDataset(n_samples=500, n_components=4, std=0.1, seed=123).get_data()
    loader = DataLoader(data, batch_size=32, shuffle=True)
    assert sum(b.shape[0] for b in loader) == 500

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dataset = TwoMoonsDataset(n_samples=3000, noise=0.05, seed=42, device=device)
    loader = DataLoader(dataset, batch_size=256, shuffle=True, drop_last=True)
    batch = next(iter(loader))
    assert batch.shape == (256, 2) and batch.device.type == device.type
    assert dataset.get_data().device.type == device.type


@pytest.mark.parametrize(
    "call, err",
    [
        (lambda: TwoMoonsDataset(n_samples=0), ValueError),
        (lambda: TwoMoonsDataset(n_samples=-5), ValueError),
        (lambda: TwoMoonsDataset(n_samples=10.0), TypeError),
        (lambda: TwoMoonsDataset(noise=-0.1), ValueError),
        (lambda: GaussianMixtureDataset(n_components=0), ValueError),
        (lambda: GaussianMixtureDataset(std=-1.0), ValueError),
        (lambda: EightGaussiansDataset(std=-0.5), ValueError),
        (lambda: PinwheelDataset(n_classes=0), ValueError),
        (lambda: PinwheelDataset(radial_scale=0.0), ValueError),
        (lambda: CheckerboardDataset(range_limit=0.0), ValueError),
        (lambda: SwissRollDataset(arclength=-1.0), ValueError),
        (lambda: GridDataset(n_samples_per_dim=0), ValueError),
        (lambda: TwoSpiralsDataset(n_turns=0.0), ValueError),
        (lambda: CircleDataset(radius=float("nan")), ValueError),
        (lambda: CircleDataset(seed=1, generator=torch.Generator()), ValueError),
        (lambda: CircleDataset(seed="1"), TypeError),
        (lambda: CircleDataset(generator=3), TypeError),
        (lambda: CircleDataset(dtype=torch.int64), TypeError),
        (lambda: CircleDataset(device="nonsense"), ValueError),
        (lambda: D.make_two_moons(0), ValueError),
        (lambda: D.make_gaussian_mixture(10, n_components=-2), ValueError),
    ],
)
def test_validation(call, err):
    with pytest.raises(err):
        call()


def test_error_messages_name_argument():
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixtureDataset(n_components=0)
    with pytest.raises(ValueError, match="std"):
        GaussianMixtureDataset(std=-0.2)
    with pytest.raises(ValueError, match="n_samples"):
        CircleDataset(n_samples=0)


class _ListData(BaseSyntheticDataset):
    def _generate_data(self, generator):
        return torch.rand(self.n_samples, 2, generator=generator, dtype=torch.float64).tolist()


class _Short(BaseSyntheticDataset):
    def _generate_data(self, generator):
        return torch.zeros(self.n_samples - 1, 2)


class _Bad(BaseSyntheticDataset):
    def _generate_data(self, generator):
        return object()


def test_custom_subclasses():
    with pytest.raises(TypeError):
        BaseSyntheticDataset(10)
    ds = _ListData(12, seed=0, dtype=torch.float64)
    assert ds.get_data().shape == (12, 2) and ds.get_data().dtype == torch.float64
    with pytest.warns(RuntimeWarning, match="generated 9 points"):
        assert len(_Short(10)) == 9
    with pytest.raises(TypeError, match="tensor or array-like"):
        _Bad(10)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cls", ALL, ids=ALL_IDS)
def test_cuda_device_same_points(cls):
    cpu = build(cls, seed=3).get_data()
    gpu = build(cls, seed=3, device="cuda").get_data()
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu(), cpu)
    g = torch.Generator(device="cuda").manual_seed(0)
    assert build(cls, generator=g, device="cuda").get_data().device.type == "cuda"


def test_a_seed_outside_the_generators_range_is_refused_and_changes_nothing():
    # before: torch's "Overflow when unpacking long long", and a failed regenerate left the
    # bad seed behind with the old data
    from torchebm.core.errors import ConfigurationError
    from torchebm.datasets import CircleDataset

    for bad in (2**64, -(2**63) - 1):
        with pytest.raises(ConfigurationError, match=r"seed must be in \[-2\*\*63, 2\*\*64\)"):
            CircleDataset(5, seed=bad)
    d = CircleDataset(5, seed=0)
    before = d.data.clone()
    with pytest.raises(ConfigurationError, match="seed must be in"):
        d.regenerate(seed=2**70)
    assert d.seed == 0 and torch.equal(d.data, before)
    for edge in (2**64 - 1, -(2**63)):  # the ends of the range work
        assert CircleDataset(5, seed=edge).data.shape == (5, 2)


def test_eight_gaussians_keeps_the_0_8_9_attributes():
    # torchebm 0.8.9's EightGaussiansDataset had `n_components` and `centers_torch`, the
    # centres in this order, scaled, float32 on the CPU
    d = EightGaussiansDataset(n_samples=800, scale=3.0, seed=0, dtype=torch.float64)
    h = 1.0 / 2**0.5
    unit = [[1, 0], [-1, 0], [0, 1], [0, -1], [h, h], [h, -h], [-h, h], [-h, -h]]
    expected = torch.tensor(unit, dtype=torch.float32) * 3.0  # 0.8.9 scaled in float32
    assert d.n_components == 8
    assert d.centers_torch.dtype == torch.float32 and d.centers_torch.device.type == "cpu"
    assert torch.equal(d.centers_torch, expected)  # bit for bit
    with pytest.raises(AttributeError):  # read-only, not a silently ignored assignment
        d.n_components = 4
    # every point is near the centre it was drawn around (std 0.02: within 0.2)
    nearest = torch.cdist(d.data.float(), expected).amin(1)
    assert float(nearest.max()) < 0.2
