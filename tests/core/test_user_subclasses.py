"""Contracts of the core base classes for a researcher's own subclass, written from the docs."""

from __future__ import annotations

import torch

from torchebm.core import BaseSampler, HarmonicModel


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
