"""Hyper-parameters assigned after construction are checked when sampling starts, with the
constructor's own checks (the error names the argument): before, an assigned value ran
silently (AIS ``transition="bogus"`` as MALA, ``base_std=-1``, HMC ``backend="bogus"``,
FlowSampler ``mode="bogus"`` as an ODE), was ignored (AIS ``n_intermediate``: the betas were
fixed at construction) or failed elsewhere (AIS ``n_transition_steps=0`` named ``n_steps``,
Langevin ``clamp=-1`` a bare TypeError)."""

import math

import pytest
import torch

import torchebm.integrators as ti
from torchebm.core import BaseModel
from torchebm.core.errors import ConfigurationError
from torchebm.samplers import (
    AnnealedImportanceSampling,
    FlowSampler,
    HamiltonianMonteCarlo,
    LangevinDynamics,
)


class _Gauss(BaseModel):
    def forward(self, x):
        return 0.5 * x.square().sum(-1)


class _Field(torch.nn.Module):
    def forward(self, x, t):
        return -x


def _gen():
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("transition", "bogus", r"transition must be one of \['hmc', 'mala', 'langevin'\]"),
        ("n_transition_steps", 0, "n_transition_steps must be >= 1, got 0"),
        ("base_std", -1.0, "base_std must be positive and finite, got -1.0"),
        ("step_size", -0.1, "step_size must be positive and finite, got -0.1"),
        ("n_leapfrog_steps", 0, "n_leapfrog_steps must be >= 1, got 0"),
        ("n_intermediate", 0, "n_intermediate must be >= 1, got 0"),
        ("schedule", "cosine", r"schedule must be one of \['sigmoid', 'linear'\]"),
        ("base_mean", math.nan, "base_mean must be finite"),  # blamed the model's energy
        ("base_mean", True, "base_mean"),  # ran as 1.0
    ],
)
def test_ais_checks_assigned_hyperparameters_at_every_estimate(name, value, error):
    ais = AnnealedImportanceSampling(_Gauss(), n_intermediate=5)
    setattr(ais, name, value)
    refused = (ConfigurationError, TypeError)  # as the constructor refuses it (a bool: TypeError)
    with pytest.raises(refused, match=error):
        ais.estimate(n_chains=8, dim=2, generator=_gen())
    with pytest.raises(refused, match=error):
        ais.reverse(torch.randn(8, 2, generator=_gen()), generator=_gen())


def test_ais_uses_an_assigned_n_intermediate_and_schedule():
    ais = AnnealedImportanceSampling(_Gauss(), n_intermediate=20)
    ais.n_intermediate = 3
    assert len(ais.betas) == 4  # before: 21, the constructor's betas
    ais.schedule = "linear"
    assert ais.betas.tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0], abs=1e-15)
    assert "n_intermediate=3" in repr(ais) and "schedule='linear'" in repr(ais)
    # the same estimate as a sampler built with those values
    built = AnnealedImportanceSampling(_Gauss(), n_intermediate=3, schedule="linear")
    r, expected = ais.estimate(64, 2, generator=_gen()), built.estimate(64, 2, generator=_gen())
    assert r.log_z == expected.log_z and math.isfinite(r.log_z)


def test_ais_says_a_custom_schedule_ignores_n_intermediate():
    ignored = "n_intermediate=9 is ignored: the custom schedule has 3 betas"
    with pytest.warns(UserWarning, match=ignored):  # before: silently
        custom = AnnealedImportanceSampling(_Gauss(), schedule=[0.0, 0.5, 1.0], n_intermediate=9)
    assert custom.betas.tolist() == [0.0, 0.5, 1.0]  # n_intermediate ignored, as documented
    assert custom.n_intermediate == 2 and "n_intermediate=2" in repr(custom)  # was 9
    custom.n_intermediate = 9  # assigned since: ignored too, said at the estimate
    with pytest.warns(UserWarning, match=ignored):
        custom.estimate(8, 2, generator=_gen())


def test_ais_betas_can_be_assigned():
    ais = AnnealedImportanceSampling(_Gauss(), n_intermediate=20)
    ais.betas = [0.0, 0.25, 1.0]  # before: a bare AttributeError (a read-only property)
    assert ais.betas.tolist() == [0.0, 0.25, 1.0] and ais.n_intermediate == 2
    built = AnnealedImportanceSampling(_Gauss(), schedule=[0.0, 0.25, 1.0])
    r, expected = ais.estimate(64, 2, generator=_gen()), built.estimate(64, 2, generator=_gen())
    assert r.log_z == expected.log_z
    for bad in ([0.0, 0.7, 0.5, 1.0], [0.1, 1.0], "linear"):
        with pytest.raises(ConfigurationError, match="betas must be an increasing sequence"):
            ais.betas = bad
    assert ais.betas.tolist() == [0.0, 0.25, 1.0]  # unchanged by the refused values


def test_hmc_checks_an_assigned_backend():
    hmc = HamiltonianMonteCarlo(_Gauss(), step_size=0.1)
    hmc.backend = "bogus"
    with pytest.raises(ConfigurationError, match=r"backend must be one of .*got 'bogus'"):
        hmc.sample(x=torch.zeros(4, 2), n_steps=2)


def test_langevin_checks_an_assigned_clamp_and_backend():
    langevin = LangevinDynamics(_Gauss(), step_size=0.1)
    langevin.clamp = -1.0
    with pytest.raises(TypeError, match=r"clamp must be None or a pair \(lo, hi\), got -1.0"):
        langevin.sample(x=torch.zeros(4, 2), n_steps=2)
    langevin.clamp = (None, 0.5)  # one-sided, as the constructor takes it
    out = langevin.sample(x=torch.zeros(64, 2), n_steps=3, generator=_gen())
    assert float(out.max()) <= 0.5 and langevin.clamp == (-math.inf, 0.5)
    langevin.backend = "bogus"
    with pytest.raises(ConfigurationError, match=r"backend must be one of .*got 'bogus'"):
        langevin.sample(x=torch.zeros(4, 2), n_steps=2)


@pytest.mark.parametrize(
    ("sampler", "builtin"),
    [
        (HamiltonianMonteCarlo, ti.LeapfrogIntegrator),
        (LangevinDynamics, ti.EulerMaruyamaIntegrator),
    ],
)
def test_an_assigned_fused_backend_refuses_a_custom_integrator(sampler, builtin):
    own = type("Own", (builtin,), {})  # a subclass runs its own steps: the kernel cannot
    with pytest.raises(ConfigurationError, match="backend='fused' runs the built-in") as built:
        sampler(_Gauss(), step_size=0.1, integrator=own(), backend="fused")
    assigned = sampler(_Gauss(), step_size=0.1, integrator=own())
    assigned.backend = "fused"  # before: ran eagerly, without the constructor's refusal
    with pytest.raises(ConfigurationError) as at_start:
        assigned.sample(x=torch.zeros(4, 2), n_steps=2)
    assert str(at_start.value) == str(built.value)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("bogus", r"mode must be one of \['ode', 'sde'\], got 'bogus'"),
        ("sde", r"mode='sde' was assigned to a FlowSampler built with mode='ode'"),
    ],
)
def test_flow_sampler_checks_an_assigned_mode(value, error):
    sampler = FlowSampler(_Field(), integrator="euler")
    sampler.mode = value
    with pytest.raises(ConfigurationError, match=error):
        sampler.sample(x=torch.ones(3, 2), n_steps=4)


def test_flow_sampler_checks_an_assigned_prediction_against_negate_velocity():
    # the constructor refuses negate_velocity with a score prediction; assigned afterwards it
    # called the model at t = 0 and read the output as a score (2979.7 from a field of 3)
    sampler = FlowSampler(_Field(), negate_velocity=True, integrator="euler")
    sampler.prediction = "score"
    with pytest.raises(ConfigurationError, match="negate_velocity=True is for an Equilibrium"):
        sampler.sample(x=torch.zeros(3, 2), n_steps=2)
