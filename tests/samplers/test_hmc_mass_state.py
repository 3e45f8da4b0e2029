"""HamiltonianMonteCarlo's tensor mass is part of its state dict.

Before the fix it was a non-persistent buffer: a saved and reloaded sampler silently kept
the mass it was constructed with. State dicts without it (torchebm 0.8.9, earlier versions
of this sampler, or a scalar mass) still load with ``strict=True`` and keep the current mass.
"""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from torchebm.core import BaseModel, GaussianModel
from torchebm.core.errors import ConfigurationError, ShapeError
from torchebm.samplers import HamiltonianMonteCarlo

STRICT_HOOK = hasattr(nn.Module, "register_load_state_dict_pre_hook")  # torch >= 2.5


def _hmc(mass):
    model = GaussianModel(torch.zeros(2), torch.diag(torch.tensor([1.0, 4.0])))
    return HamiltonianMonteCarlo(model, step_size=0.2, n_leapfrog_steps=3, mass=mass)


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _draw(sampler):
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    return sampler.sample(x=x, n_steps=4, generator=torch.Generator().manual_seed(1))


def test_a_tensor_mass_is_saved_and_restored():
    saved = _hmc(torch.tensor([1.0, 4.0]))
    state = _roundtrip(saved.state_dict())
    assert torch.equal(state["_mass"], torch.tensor([1.0, 4.0]))
    other = _hmc(torch.tensor([1.0, 1.0]))
    other.load_state_dict(state)  # strict
    assert torch.equal(other.mass, torch.tensor([1.0, 4.0]))
    assert torch.equal(_draw(other), _draw(saved))


def test_the_mass_follows_a_nested_sampler():
    outer = nn.ModuleDict({"hmc": _hmc(torch.tensor([2.0, 3.0]))})
    fresh = nn.ModuleDict({"hmc": _hmc(torch.tensor([1.0, 1.0]))})
    fresh.load_state_dict(_roundtrip(outer.state_dict()))
    assert torch.equal(fresh["hmc"].mass, torch.tensor([2.0, 3.0]))


@pytest.mark.parametrize("strict", [False] + ([True] if STRICT_HOOK else []))
def test_a_state_dict_without_the_mass_keeps_the_current_one(strict):
    # what torchebm 0.8.9 and earlier versions of this sampler wrote: no "_mass" entry
    old = _hmc(torch.tensor([1.0, 4.0])).state_dict()
    old.pop("_mass", None)
    current = torch.tensor([3.0, 0.5])
    sampler = _hmc(current)
    result = sampler.load_state_dict(old, strict=strict)
    # torch 2.4 has no public load pre-hook: a non-strict load reports the absent mass
    assert result.missing_keys == ([] if STRICT_HOOK else ["_mass"])
    assert not result.unexpected_keys
    assert torch.equal(sampler.mass, current)
    assert torch.equal(_draw(sampler), _draw(_hmc(current)))


def test_a_scalar_mass_state_dict_loads_into_a_tensor_mass_sampler():
    sampler = _hmc(torch.tensor([3.0, 0.5]))
    sampler.load_state_dict(_hmc(2.0).state_dict(), strict=STRICT_HOOK)
    assert torch.equal(sampler.mass, torch.tensor([3.0, 0.5]))
    assert "_mass" not in _hmc(2.0).state_dict() and _hmc(2.0).mass == 2.0


class _Scaled(BaseModel):
    """N(0, s^2) in one dimension: the unit Gaussian in units scaled by s."""

    def __init__(self, scale: float, dtype: torch.dtype = torch.float64):
        super().__init__(dtype=dtype)
        self.scale = scale

    def forward(self, x):
        return 0.5 * (x[:, 0] / self.scale) ** 2


def test_a_tiny_mass_is_the_same_chain_in_scaled_units():
    # mass = precision (whitening) of N(0, s^2): with s a power of two every quantity of the
    # chain scales exactly, so the chains equal s times the unit chains. A mass floor of 1e-10
    # in the leapfrog's drift, not in the momenta or the kinetic energy, froze the chains at
    # s = 2^20 (acceptance 0.50, lag-1 autocorrelation 1.000, against 0.98 at s = 1)
    runs = {}
    for scale in (1.0, 2.0**20):
        hmc = HamiltonianMonteCarlo(
            _Scaled(scale), step_size=0.5, n_leapfrog_steps=4, mass=scale**-2, dtype=torch.float64
        )
        g = torch.Generator().manual_seed(0)
        x0 = scale * torch.randn(2000, 1, generator=g, dtype=torch.float64)
        runs[scale] = hmc.sample(x=x0, n_steps=20, generator=g, return_diagnostics=True)
    (x1, d1), (xs, ds) = runs[1.0], runs[2.0**20]
    assert float(d1["acceptance_rate"].mean()) > 0.95
    assert torch.equal(d1["acceptance_rate"], ds["acceptance_rate"])
    assert torch.equal(x1 * 2.0**20, xs)


def test_the_event_shape_is_inferred_only_from_a_vector_mean():
    # an image model's (C, 1, 1) normalisation buffer named `mean` was taken as the event
    # shape: samples of shape (2, 3, 1, 1) without a word
    class Images(BaseModel):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1))

        def forward(self, x):
            return (x - self.mean).pow(2).flatten(1).sum(1)

    with pytest.raises(ConfigurationError, match="dim"):
        HamiltonianMonteCarlo(Images(), step_size=0.01).sample(n_samples=2, n_steps=2)
    gauss = GaussianModel(torch.zeros(3), torch.eye(3))
    assert HamiltonianMonteCarlo(gauss, step_size=0.1).sample(n_samples=2, n_steps=2).shape == (
        2,
        3,
    )


def test_a_vector_normalisation_buffer_taken_as_the_event_shape_is_named():
    # a (C,) buffer named `mean` (as torchebm 0.8.9, it gives the event shape): the energy
    # check blamed the model alone ("must return energies of shape (B,) = (4,), got (1,)")
    class Images(BaseModel):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]))

        def forward(self, x):
            return (x - self.mean.view(1, -1, 1, 1)).pow(2).flatten(1).mean(1)

    hmc = HamiltonianMonteCarlo(Images(), step_size=0.01)
    with pytest.raises(ShapeError, match=r"got \(1,\) \(the chains' event shape \(3,\) is that of"):
        hmc.sample(n_samples=4, n_steps=2)
    assert hmc.sample(n_samples=4, dim=(3, 2, 2), n_steps=2).shape == (4, 3, 2, 2)


@pytest.mark.parametrize("sampler", ["langevin", "hmc"])
def test_a_plain_callable_without_x_in_its_graph_is_named(sampler):
    # the samplers' autograd path for a callable without .gradient raised autograd's "element
    # 0 of tensors does not require grad"
    from torchebm.samplers import LangevinDynamics

    def constant(x):
        return torch.zeros(len(x), dtype=x.dtype)

    make = LangevinDynamics if sampler == "langevin" else HamiltonianMonteCarlo
    with pytest.raises(RuntimeError, match="constant does not depend differentiably on x"):
        make(constant, step_size=0.1).sample(n_samples=2, dim=2, n_steps=2)


def test_a_mass_below_the_dtypes_smallest_normal_number_is_refused():
    # float16 chains with mass 2^-16 (1.5e-5): the drift's 1/M overflowed to inf, the leapfrog
    # floored it, the kinetic energy did not (acceptance 0.64 where unit scale accepts 0.98)
    x = torch.randn(64, 1, dtype=torch.float16)
    half = _Scaled(256.0, torch.float16)
    hmc = HamiltonianMonteCarlo(half, step_size=0.5, mass=2.0**-16, dtype=torch.float16)
    with pytest.raises(ConfigurationError, match="mass must be at least 6.1e-05.*float16"):
        hmc.sample(x=x, n_steps=2)
    tensor_mass = HamiltonianMonteCarlo(
        half, step_size=0.5, mass=torch.tensor([1e-5]), dtype=torch.float16
    )
    with pytest.raises(ConfigurationError, match="mass must be at least"):
        tensor_mass.sample(x=x, n_steps=2)
