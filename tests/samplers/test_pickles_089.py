"""Samplers pickled whole by torchebm 0.8.9 (``torch.save(sampler)``) load and sample here.

The pickles are rebuilt by hand in 0.8.9's attribute layout (`_support.pickles_089`, e.g.
no ``nan_policy``, HMC's ``mass`` an attribute, FlowSampler's ``prediction_type``, the
integrators' ``_norm`` and tableau buffers). Each upgraded sampler must equal the sampler it
was made from and draw the same chains from the same generator.
"""

from __future__ import annotations

import pytest
import torch
from _support.pickles_089 import assert_same_state, assert_upgrade_matches, unpickle_089
from torch import nn

from torchebm.core import BaseModel, LinearScheduler
from torchebm.samplers import (
    FlowSampler,
    GradientDescentSampler,
    HamiltonianMonteCarlo,
    LangevinDynamics,
    NesterovSampler,
    RiemannianManifoldHMC,
)

X = torch.linspace(-1.0, 1.0, 8).reshape(4, 2)


class Energy(BaseModel):
    """A quadratic bowl plus a learned linear term (module level: picklable)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[0.3, -0.2]]))
            self.lin.bias.fill_(0.1)

    def forward(self, x):
        return self.lin(x).squeeze(-1) + 0.5 * x.pow(2).sum(-1)


class Field(nn.Module):
    """A linear velocity field ``v(x, t)``."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        with torch.no_grad():
            self.lin.weight.copy_(torch.linspace(-0.5, 0.5, 6).reshape(2, 3))

    def forward(self, x, t, **kwargs):
        return self.lin(torch.cat([x, t.reshape(-1, 1).to(x)], dim=-1))


def metric(x):
    return 2.0 * torch.eye(x.shape[-1]).expand(x.shape[0], -1, -1)


class ScaledLangevin(LangevinDynamics):
    """A user's 0.8.9 subclass with its own constructor, attribute and submodule."""

    def __init__(self, model, factor=3.0):
        super().__init__(model, step_size=0.02)
        self.factor = factor
        self.offset = nn.Linear(2, 2)

    def sample(self, *args, **kwargs):
        return super().sample(*args, **kwargs) * self.factor + self.offset.bias.sum()


CASES = {
    "langevin": lambda: LangevinDynamics(Energy(), step_size=0.05),
    "langevin_heun_scheduled": lambda: LangevinDynamics(
        Energy(),
        step_size=LinearScheduler(0.05, 0.01, 4),
        noise_scale=0.5,
        clamp=(-1.0, 1.0),
        integrator="heun",
    ),  # fmt: skip
    "hmc_scalar_mass": lambda: HamiltonianMonteCarlo(Energy(), 0.1, n_leapfrog_steps=3, mass=2.0),
    "hmc_tensor_mass": lambda: HamiltonianMonteCarlo(
        Energy(), 0.1, n_leapfrog_steps=2, mass=torch.tensor([1.0, 3.0])
    ),
    "rmhmc": lambda: RiemannianManifoldHMC(Energy(), metric, step_size=0.05, n_leapfrog_steps=2),
    "gradient_descent": lambda: GradientDescentSampler(Energy(), step_size=0.1),
    "nesterov": lambda: NesterovSampler(Energy(), step_size=0.1, momentum=0.7),
    "flow_ode_rk4": lambda: FlowSampler(Field(), integrator="rk4", sample_eps=0.01),
    "flow_ode_dopri5": lambda: FlowSampler(Field()),
    "flow_sde": lambda: FlowSampler(Field(), mode="sde", diffusion_norm=0.5, last_step=None),
    "user_subclass": lambda: ScaledLangevin(Energy(), factor=2.0),
}


def _draw(sampler):
    return sampler.sample(x=X.clone(), n_steps=4, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_089_pickle_becomes_the_sampler_it_was_made_from(name):
    sampler = CASES[name]()
    for obj in assert_upgrade_matches(sampler, _draw):
        assert obj.get_schedulers().keys() == sampler.get_schedulers().keys()


def test_the_schedule_position_of_a_089_pickle_is_kept():
    sampler = LangevinDynamics(Energy(), step_size=LinearScheduler(0.1, 0.0, 10))
    sampler.step_schedulers()
    sampler.step_schedulers()
    upgraded = unpickle_089(sampler)
    assert upgraded.step_size == pytest.approx(sampler.step_size) == pytest.approx(0.08)
    g = torch.Generator
    got = upgraded.sample(
        x=X.clone(), n_steps=3, reset_schedulers=False, generator=g().manual_seed(1)
    )
    want = sampler.sample(
        x=X.clone(), n_steps=3, reset_schedulers=False, generator=g().manual_seed(1)
    )
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_user_subclass_keeps_what_it_added():
    sampler = ScaledLangevin(Energy(), factor=2.5)
    upgraded = unpickle_089(sampler)
    assert type(upgraded) is ScaledLangevin and upgraded.factor == 2.5
    torch.testing.assert_close(upgraded.offset.weight, sampler.offset.weight)
    assert upgraded.step_size == 0.02 and upgraded.nan_policy == "warn"


def test_the_model_of_a_089_pickle_is_the_unpickled_one_in_eval_mode():
    sampler = LangevinDynamics(Energy(), step_size=0.05)
    sampler.model.eval()
    upgraded = unpickle_089(sampler)
    assert_same_state(upgraded, sampler)
    assert isinstance(upgraded.model, Energy) and not upgraded.model.training
    assert upgraded.training  # the sampler's own flag, 0.8.9's
