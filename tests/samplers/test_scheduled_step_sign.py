"""A scheduled step size or noise scale that turns negative or NaN during ``sample()`` stops
the run with an error that names it, for every sampler that reads it per step."""

from __future__ import annotations

import pytest
import torch

from torchebm.core import BaseScheduler, HarmonicModel
from torchebm.core.errors import ConfigurationError
from torchebm.samplers import (
    GradientDescentSampler,
    HamiltonianMonteCarlo,
    LangevinDynamics,
    NesterovSampler,
)


class _FlipsAt(BaseScheduler):
    """``start`` for the first ``at`` steps, then ``-start`` (or NaN)."""

    def __init__(self, start_value, at=3, then=None):
        self.at, self.then = at, then
        super().__init__(start_value)

    def compute_value(self):
        if self.step_count < self.at:
            return self.start_value
        return -self.start_value if self.then is None else self.then


@pytest.mark.parametrize(
    "make",
    [LangevinDynamics, GradientDescentSampler, NesterovSampler, HamiltonianMonteCarlo],
    ids=lambda c: c.__name__,
)
def test_a_step_size_schedule_crossing_zero_raises_at_the_step_it_does(make):
    # before: Langevin/GD/Nesterov ran gradient ascent (variance 230, 106 and 7e7 for a
    # target of 1) without a word
    sampler = make(HarmonicModel(), step_size=_FlipsAt(0.05))
    with pytest.raises(
        ConfigurationError,
        match=r"step_size must be finite and not negative, got -0.05 from its _FlipsAt at step 3",
    ):
        sampler.sample(dim=2, n_samples=8, n_steps=10, generator=torch.Generator().manual_seed(0))
    # the steps before the crossing are fine: a run that ends before it returns
    out = make(HarmonicModel(), step_size=_FlipsAt(0.05)).sample(dim=2, n_samples=8, n_steps=3)
    assert out.shape == (8, 2) and torch.isfinite(out).all()


def test_a_noise_scale_schedule_turning_nan_raises():
    sampler = LangevinDynamics(HarmonicModel(), 0.05, noise_scale=_FlipsAt(1.0, then=float("nan")))
    with pytest.raises(ConfigurationError, match="noise_scale must be finite and not negative"):
        sampler.sample(dim=2, n_samples=8, n_steps=10)
