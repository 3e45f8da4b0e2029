"""Contracts of the core base classes for a researcher's own subclass, written from the docs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from torchebm.core import BaseSampler, HarmonicModel, SamplerState
from torchebm.core.errors import NonFiniteError


class InPlaceGradientFlow(BaseSampler):
    """x <- x - 0.1 grad E(x), updated in place (the default `init_state`)."""

    def step(self, state, ctx):
        state.x.sub_(0.1 * self.gradient_fn(ctx)(state.x))
        return state


def test_sample_never_modifies_the_callers_x_under_an_in_place_step():
    # E = |x|^2 / 2: three steps multiply x by 0.9**3; the caller's starting chains stay
    x = torch.ones(4, 2)
    out = InPlaceGradientFlow(HarmonicModel()).sample(x, n_steps=3)
    assert torch.equal(x, torch.ones(4, 2))
    assert torch.allclose(out, torch.full((4, 2), 0.9**3))


class Counter(BaseSampler):
    """x <- x + n for a macro step of n steps: x counts the steps taken."""

    def steps_per_call(self, state, ctx):
        return 4

    def step(self, state, ctx):
        state.x = state.x + ctx.n
        return state


def test_a_macro_step_stops_at_every_recorded_row():
    # strides of 4 with thin=2: rows after steps 2, 4, ..., 10 (they held the states after
    # steps 4, 8, 10, 10, 10, labelled as 2, 4, 6, 8, 10)
    traj = Counter(HarmonicModel()).sample(
        torch.zeros(1, 1), n_steps=10, thin=2, return_trajectory=True
    )
    assert traj.flatten().tolist() == [2.0, 4.0, 6.0, 8.0, 10.0]
    # without recording the strides stay whole (the last one shortened)
    assert float(Counter(HarmonicModel()).sample(torch.zeros(1, 1), n_steps=10)) == 10.0


@dataclass
class WalkState(SamplerState):
    energy: torch.Tensor | None = None


class CachedEnergyWalk(BaseSampler):
    """x <- x + 0.1 with the energy E(x) kept in the state (as a Metropolis sampler keeps it)."""

    def init_state(self, x, ctx):
        return WalkState(x=x, energy=self.model_energy(x, ctx.model_kwargs))

    def step(self, state, ctx):
        state.x = state.x + 0.1
        state.energy = self.model_energy(state.x, ctx.model_kwargs)
        return state


class NanRightOfTwo(HarmonicModel):
    """Harmonic energy, NaN where x_0 > 2."""

    def forward(self, x):
        return torch.where(x[:, 0] > 2, torch.nan, super().forward(x))


def test_resample_names_chains_whose_start_has_a_nan_energy():
    # before: chain 1 was "restarted" at every check, back to its NaN start, and returned
    # there (energy still NaN) under a warning that said only that it had been restarted
    x0 = torch.zeros(4, 2)
    x0[1, 0] = 3.0
    walk = CachedEnergyWalk(NanRightOfTwo())
    with pytest.warns(RuntimeWarning, match=r"restarted 1 of 4 chains.*chains \[1\] start where "
                      r"the energy or its gradient is NaN/inf: they are returned there, still divergent"):  # fmt: skip
        out = walk.sample(x0, n_steps=5, nan_policy="resample")
    assert torch.equal(out[1], x0[1])
    with pytest.warns(RuntimeWarning, match="1 of 4 chains diverged"):
        out = walk.sample(x0, n_steps=5, nan_policy="warn")  # warn reports it and goes on
    torch.testing.assert_close(out[1], x0[1] + 0.5)
    x0[1, 0] = 1.8  # a finite start that diverges later is restarted, as documented
    with pytest.warns(RuntimeWarning, match="restarted 1 of 4 chains") as caught:
        out = walk.sample(x0, n_steps=5, nan_policy="resample")
    assert torch.isfinite(out).all() and "still divergent" not in str(caught[0].message)


def test_a_chain_whose_start_has_a_nan_energy_is_reported_at_the_start():
    # it was reported as diverged at "step 1" (or "steps 1-10" with the default check every
    # 10 steps); a chain that goes non-finite later keeps its step window
    x0 = torch.zeros(4, 2)
    x0[1, 0], x0[2, 0] = 3.0, 1.75  # chain 2: x_0 = 2.05 > 2 after step 3
    walk = CachedEnergyWalk(NanRightOfTwo())
    for every, later in ((10, r"2 \(steps 1-10\)"), (1, r"2 \(step 3\)")):
        match = rf"2 of 4 chains diverged .*: 1 \(at the start\), {later}"
        with pytest.warns(RuntimeWarning, match=match):
            walk.sample(x0, n_steps=10, nan_check_every=every)
    with pytest.raises(NonFiniteError) as err:
        walk.sample(x0, n_steps=10, nan_check_every=1, nan_policy="raise")
    assert err.value.step == 0 and err.value.windows == [(0, 0), (3, 3)]


class OverflowsAtStepTwo(CachedEnergyWalk):
    """The walk, with chain 1's x set to inf by the second step."""

    def step(self, state, ctx):
        state = super().step(state, ctx)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 2:
            state.x[1] = math.inf
        return state


def test_a_nan_start_stays_at_the_start_when_the_trajectory_narrows_the_window():
    # with return_trajectory=True the recorded x narrowed chain 1's window to its overflow
    # at step 2, and the report said "1 (step 2)" where it had been non-finite from the start
    x0 = torch.zeros(4, 2)
    x0[1, 0] = 3.0
    walk = OverflowsAtStepTwo(NanRightOfTwo())
    with pytest.raises(NonFiniteError, match=r"1 \(at the start\)") as err:
        walk.sample(x0, n_steps=10, return_trajectory=True, nan_policy="raise")
    assert err.value.step == 0 and err.value.windows == [(0, 0)]
