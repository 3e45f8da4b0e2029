"""ParallelTemperingCD with a library sampler whose step size is scheduled: the negative
phase runs the sampler in segments between swaps, and the schedule runs across them."""

from __future__ import annotations

import pytest
import torch

from torchebm.core import GaussianModel, LinearScheduler
from torchebm.losses import ContrastiveDivergence, ParallelTemperingCD
from torchebm.samplers import LangevinDynamics


@pytest.mark.parametrize("swap_every", [1, 2, 5])
def test_a_sampler_schedule_runs_across_the_swap_segments(swap_every):
    # each segment between swaps was a sampler call that reset the schedules: with
    # swap_every=1 a decaying step size stayed at its first value for all k_steps (negatives
    # bit-identical to a constant step). The schedule now advances as in plain CD
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    schedules = []
    for make in (ContrastiveDivergence, ParallelTemperingCD):
        step = LinearScheduler(0.1, 0.01, n_steps=5)
        kwargs = {"temperatures": (1.0, 2.0), "swap_every": swap_every}
        loss = make(
            model,
            LangevinDynamics(model, step_size=step),
            k_steps=5,
            **(kwargs if make is ParallelTemperingCD else {}),
        )
        loss.negative_phase(x, generator=torch.Generator().manual_seed(1))
        schedules.append((step.step_count, step.get_value()))
    assert schedules[1] == schedules[0] == (5, pytest.approx(0.01))
