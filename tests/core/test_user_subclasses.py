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
