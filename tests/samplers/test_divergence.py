"""Divergent chains (issue 15): warned about once per call with counts and recorded, not
fatal by default; `nan_policy="raise"` still stops; NaN/inf inputs still raise."""

from __future__ import annotations

import warnings

import pytest
import torch
from samplers_helpers import FACTORIES, analytic_model

from torchebm.core import DoubleWellModel, HarmonicModel, LinearScheduler, WarmupScheduler
from torchebm.core.errors import NonFiniteError
from torchebm.samplers import GradientDescentSampler, LangevinDynamics


def _sample_recording_warnings(sampler, x0, n_steps):
    """``sampler.sample(x=x0, n_steps=n_steps)`` and the messages of its RuntimeWarnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sampler.sample(x=x0, n_steps=n_steps)
    return out, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_default_warns_once_with_counts_and_records_the_chains():
    x0 = torch.tensor([[0.1], [5.0], [0.2], [7.0]])
    sampler = GradientDescentSampler(HarmonicModel(k=1.0), step_size=3.0)  # |1 - 3| = 2
    x0[[0, 2]] = 0.0  # those stay at the minimum, the others grow 2x per step
    out, msgs = _sample_recording_warnings(sampler, x0, n_steps=200)
    assert len(msgs) == 1 and "2 of 4 chains diverged" in msgs[0]
    assert sampler.divergent_chains.tolist() == [False, True, False, True]
    assert torch.isfinite(out).all(1).tolist() == [True, False, True, False]  # never masked
    with pytest.raises(NonFiniteError):
        sampler.sample(x=x0, n_steps=200, nan_policy="raise")
    sampler.sample(x=torch.zeros(4, 1), n_steps=5)
    assert not sampler.divergent_chains.any()  # reset on every call


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_sampler_rejects_non_finite_inputs_and_defaults_to_warn(name):
    factory, kind = FACTORIES[name]
    sampler = factory(analytic_model(kind))
    assert sampler.nan_policy == "warn"
    x = torch.zeros(3, 2)
    x[1, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        sampler.sample(x=x, n_steps=2)


def _spec_visualisation_example(seed: int) -> torch.Tensor:
    """The "Sampler Visualizations" example of the user guide (sampling part), global RNG
    seeded with `seed`."""
    torch.manual_seed(seed)
    model = DoubleWellModel(barrier_height=5.0)
    scheduler = WarmupScheduler(
        main_scheduler=LinearScheduler(initial_value=0.05, final_value=0.03, total_steps=100),
        warmup_steps=10,
        warmup_init_factor=0.01,
    )
    sampler = LangevinDynamics(model=model, step_size=scheduler)
    initial_point = torch.tensor([[-2.0, 0.0]], dtype=torch.float32)
    return sampler.sample(x=initial_point, dim=2, n_steps=1000, return_trajectory=True)


@pytest.mark.slow
def test_the_documented_double_well_example_runs_for_every_seed():
    diverged = 0
    for seed in range(100):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traj = _spec_visualisation_example(seed)
        assert traj.shape == (1, 1000, 2)
        bad = not torch.isfinite(traj).all()
        warned = any("diverged" in str(w.message) for w in caught)
        assert bad == warned, seed  # every divergence is reported, nothing else is
        diverged += bad
    print(f"{diverged} of 100 seeds diverged (warned, returned)")
    assert diverged > 0  # the example does diverge: the test exercises the policy


class _NaNOnTheRight(HarmonicModel):
    """Harmonic energy, NaN where the first coordinate is > 1 (chains started there can
    never leave: every proposal from a NaN current energy is rejected)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = super().forward(x)
        return torch.where(x[:, 0] > 1.0, torch.full_like(e, float("nan")), e)


def _metropolis_samplers():
    from _support.examples import load_example

    from torchebm.samplers import HamiltonianMonteCarlo, RiemannianManifoldHMC

    rwm = load_example("50_custom_sampler.py").RandomWalkMetropolis
    metric = lambda x: torch.eye(2).expand(x.shape[0], 2, 2)  # noqa: E731
    return {
        "hmc": lambda m: HamiltonianMonteCarlo(m, step_size=0.1, n_leapfrog_steps=3),
        "rmhmc": lambda m: RiemannianManifoldHMC(m, metric, step_size=0.1, n_leapfrog_steps=2),
        "rwm": lambda m: rwm(m, step_size=0.1),
    }


@pytest.mark.parametrize("name", ["hmc", "rmhmc", "rwm"])
def test_metropolis_chains_with_a_non_finite_energy_are_reported(name):
    # the chains stay finite (every proposal is rejected), but a chain whose current
    # energy is NaN is a divergence: reported by nan_policy like a NaN x
    sampler = _metropolis_samplers()[name](_NaNOnTheRight())
    x0 = torch.tensor([[0.1, 0.0], [5.0, 0.0], [-0.2, 0.1], [3.0, 1.0]])
    with pytest.raises(NonFiniteError) as info:
        sampler.sample(x=x0, n_steps=3, nan_policy="raise", nan_check_every=1)
    assert sorted(info.value.indices) == [1, 3] and info.value.step == 0  # at the start
    with pytest.warns(RuntimeWarning, match="2 of 4 chains diverged"):
        out = sampler.sample(x=x0, n_steps=3)
    assert sampler.divergent_chains.tolist() == [False, True, False, True]
    assert torch.equal(out[[1, 3]], x0[[1, 3]])  # returned as they are, finite


def test_a_rejected_non_finite_proposal_is_not_a_divergence():
    from torchebm.samplers import HamiltonianMonteCarlo

    # started left of the NaN region with steps that overshoot into it: proposals there
    # are rejected (correct Metropolis behaviour) and nothing is reported
    sampler = HamiltonianMonteCarlo(_NaNOnTheRight(), step_size=1.5, n_leapfrog_steps=1)
    g = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, diag = sampler.sample(
            x=torch.full((64, 2), 0.5), n_steps=20, generator=g, return_diagnostics=True
        )
    assert not sampler.divergent_chains.any()
    assert float(diag["acceptance_rate"].mean()) < 0.9  # some proposals were NaN and rejected


def test_a_user_sampler_whose_step_calls_integrate_follows_nan_policy():
    # integrate() rejects a NaN starting state when a user calls it, but inside sample()'s
    # loop its input is the chains, which nan_policy watches: a chain that diverged must
    # be warned about (the default), not raised about by the integrator's entry check
    from torchebm.core import BaseSampler
    from torchebm.integrators import LeapfrogIntegrator

    class LeapfrogWalk(BaseSampler):
        def step(self, state, ctx):
            p = torch.zeros_like(state.x)  # deterministic: a gradient-descent-like walk
            grad = self.gradient_fn(ctx)
            out = LeapfrogIntegrator().integrate(
                {"x": state.x, "p": p}, 0.05, 3, gradient=lambda z, t: grad(z)
            )
            state.x = out["x"]
            return state

    sampler = LeapfrogWalk(DoubleWellModel(barrier_height=5.0))
    x0 = torch.tensor([[0.9, 1.0], [40.0, 0.0]])  # the second chain overflows at once
    with pytest.warns(RuntimeWarning, match="1 of 2 chains diverged"):
        sampler.sample(x=x0, n_steps=6)
    assert sampler.divergent_chains.tolist() == [False, True]
    with pytest.raises(NonFiniteError, match="state\\['x'\\]"):  # a user's own call: checked
        LeapfrogIntegrator().integrate(
            {"x": torch.full((1, 2), float("nan")), "p": torch.zeros(1, 2)},
            0.1,
            1,
            gradient=lambda z, t: z,
        )


def test_a_call_checked_once_reports_the_chains_that_diverged():
    # n_steps <= nan_check_every: the final check is the only one (one sum, then the mask)
    x0 = torch.tensor([[0.0], [1e38], [0.0], [3e37]])
    sampler = GradientDescentSampler(HarmonicModel(k=1.0), step_size=3.0)  # x -> -2x
    out, msgs = _sample_recording_warnings(sampler, x0, n_steps=5)
    assert len(msgs) == 1 and "2 of 4 chains diverged" in msgs[0]
    assert sampler.divergent_chains.tolist() == [False, True, False, True]
    assert torch.isfinite(out).all(1).tolist() == [True, False, True, False]
    with pytest.raises(NonFiniteError) as err:
        sampler.sample(x=x0, n_steps=5, nan_policy="raise")
    assert err.value.indices == [1, 3]


def test_finite_chains_whose_sum_overflows_are_not_divergent():
    # every entry finite (about 3e38) but their float32 sum is inf: the per-chain mask decides
    x0 = torch.full((3, 2), 3e38)
    sampler = GradientDescentSampler(HarmonicModel(k=1.0), step_size=1e-3)  # x -> 0.999 x
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = sampler.sample(x=x0, n_steps=3, nan_policy="raise")
    assert torch.isinf(out.sum()) and torch.isfinite(out).all()
    assert sampler.divergent_chains.tolist() == [False, False, False]
