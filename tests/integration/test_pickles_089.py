"""Objects that torchebm 0.8.9 pickled whole, across pieces: a loss holding a sampler, the
Energy Matching loss with the sampler 0.8.9 built for it; and the names 0.8.9's modules
imported from elsewhere, which users imported from them (``from torchebm.samplers.hmc
import GeneralisedLeapfrogIntegrator``)."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from _support.losses import MLPEnergy
from _support.pickles_089 import as_089, assert_same_state, roundtrip, unpickle_089

from torchebm.core import ConstantScheduler, TemperatureScheduler
from torchebm.losses import ContrastiveDivergence, EnergyMatchingLoss
from torchebm.samplers import LangevinDynamics

X = torch.linspace(-1.0, 1.0, 16).reshape(8, 2)


def _value(loss):
    torch.manual_seed(0)
    out = loss(X, generator=torch.Generator().manual_seed(0))
    return out[0] if isinstance(out, tuple) else out


def test_a_089_contrastive_divergence_with_langevin_keeps_one_model():
    model = MLPEnergy(hidden=8)
    loss = ContrastiveDivergence(model, LangevinDynamics(model, step_size=0.05), k_steps=3)
    upgraded = unpickle_089(loss)
    assert_same_state(upgraded, loss)
    assert_same_state(upgraded.sampler, loss.sampler)
    assert upgraded.sampler.model is upgraded.model
    torch.testing.assert_close(_value(upgraded), _value(loss), rtol=0, atol=0)


def _energy_matching_089(loss: EnergyMatchingLoss) -> torch.nn.Module:
    """``loss`` as 0.8.9 pickled it after a call: its default sampler
    ``LangevinDynamics(model, step_size=langevin_dt)``, whose ``noise_scale`` was left on
    the loss's constant-temperature schedule, and the loss's two schedules."""
    memo: dict = {}
    old = as_089(loss, memo)
    default = LangevinDynamics(loss.model, step_size=loss.langevin_dt)
    sampler = as_089(default, memo)  # shares the copy of the model
    sweep = TemperatureScheduler(loss.epsilon_max, loss.tau_star, loss.n_langevin_steps)
    const = ConstantScheduler(math.sqrt(loss.epsilon_max))
    vars(sampler)["schedulers"]["noise_scale"] = const
    vars(old)["_modules"]["sampler"] = sampler
    vars(old).update(_noise_sweep=sweep, _noise_const=const)
    return old


def test_a_089_energy_matching_runs_its_chains_itself_as_a_fresh_one():
    loss = EnergyMatchingLoss(MLPEnergy(hidden=8), n_langevin_steps=4, coupling="greedy")
    upgraded = roundtrip(_energy_matching_089(loss))
    assert upgraded.sampler is None
    assert_same_state(upgraded, loss)
    torch.testing.assert_close(_value(upgraded), _value(loss), rtol=0, atol=0)


def test_a_089_energy_matching_keeps_a_sampler_of_its_user():
    model = MLPEnergy(hidden=8)
    sampler = LangevinDynamics(model, step_size=0.02, noise_scale=0.5)
    loss = EnergyMatchingLoss(model, sampler=sampler, n_langevin_steps=4, coupling="greedy")
    upgraded = unpickle_089(loss)
    assert isinstance(upgraded.sampler, LangevinDynamics)
    assert upgraded.sampler.model is upgraded.model
    torch.testing.assert_close(_value(upgraded), _value(loss), rtol=0, atol=0)


#: (0.8.9 module, name it imported, this version's public home)
IMPORTED_089 = [
    ("torchebm.samplers.hmc", "GeneralisedLeapfrogIntegrator", "torchebm.integrators"),
    ("torchebm.samplers.hmc", "BaseSymplecticIntegrator", "torchebm.integrators"),
    ("torchebm.samplers.hmc", "resolve_integrator", "torchebm.integrators"),
    ("torchebm.samplers.hmc", "BaseSampler", "torchebm.core"),
    ("torchebm.samplers.langevin_dynamics", "BaseSDERungeKuttaIntegrator", "torchebm.integrators"),
    ("torchebm.samplers.langevin_dynamics", "BaseScheduler", "torchebm.core"),
    ("torchebm.models.dit", "AdaLNZeroBlock", "torchebm.models"),
    ("torchebm.models.dit", "AdaLNZeroPatchHead", "torchebm.models"),
    ("torchebm.models.dit", "ConvPatchEmbed2d", "torchebm.models"),
    ("torchebm.models.dit", "build_2d_sincos_pos_embed", "torchebm.models"),
    ("torchebm.models.mlp", "AdaLNZeroMLPBlock", "torchebm.models"),
    ("torchebm.models.mlp", "AdaLNZeroLinearHead", "torchebm.models"),
    ("torchebm.models.backbone", "LabelEmbedder", "torchebm.models"),
    ("torchebm.models.backbone", "MLPTimestepEmbedder", "torchebm.models"),
    ("torchebm.models.conditional_transformer_2d", "DiT", "torchebm.models"),
    ("torchebm.models.wrappers", "substitute_condition", "torchebm.core"),
    ("torchebm.models.wrappers", "Schedulable", "torchebm.core"),
    ("torchebm.models.components.heads", "modulate", "torchebm.models"),
    ("torchebm.models.components.heads", "unpatchify2d", "torchebm.models"),
    ("torchebm.losses.score_matching", "BaseScoreMatching", "torchebm.losses"),
    ("torchebm.losses.contrastive_divergence", "BaseContrastiveDivergence", "torchebm.losses"),
    ("torchebm.integrators.rk4", "BaseRungeKuttaIntegrator", "torchebm.integrators"),
    ("torchebm.integrators.heun", "BaseSDERungeKuttaIntegrator", "torchebm.integrators"),
    ("torchebm.integrators.leapfrog", "BaseSymplecticIntegrator", "torchebm.integrators"),
    ("torchebm.integrators.integrator_utils", "BaseIntegrator", "torchebm.core"),
    ("torchebm.interpolants.interpolant_utils", "BaseInterpolant", "torchebm.core"),
    ("torchebm.couplings.coupling_utils", "BaseCoupling", "torchebm.core"),
    ("torchebm.utils.ema", "requires_grad", "torchebm.utils"),
]


@pytest.mark.parametrize(("module", "name", "home"), IMPORTED_089)
def test_a_name_a_089_module_imported_resolves_there(module, name, home):
    got = getattr(importlib.import_module(module), name)
    assert got is getattr(importlib.import_module(home), name)


def test_a_089_energy_matching_keeps_its_train_eps():
    loss = EnergyMatchingLoss(MLPEnergy(hidden=8), lambda_cd=0.0, train_eps=0.2)
    upgraded = unpickle_089(loss)
    assert upgraded.train_eps == 0.2
    torch.testing.assert_close(_value(upgraded), _value(loss), rtol=0, atol=0)
