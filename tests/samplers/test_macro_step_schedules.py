"""Schedulers under a step() that advances several steps at once (``steps_per_call``).

`BaseSampler.steps_per_call` documents that a call of ``step`` advances ``ctx.n`` steps: the
schedules must move by ``ctx.n`` per call, so that the value a macro step reads is the one of
its first step and the schedule ends where a step-by-step run ends. The reference is the
documented `LinearScheduler` value ``start + k (end - start) / n_steps`` at step ``k``.
A `ConstantScheduler`, which the loop does not step, still ends a call at the same
documented position (``step_count``) as a moving one.
"""

from __future__ import annotations

import pytest
import torch

from torchebm.core import BaseSampler, ConstantScheduler, HarmonicModel, LinearScheduler


class MacroSteps(BaseSampler):
    """Advances ``ctx.n`` (up to ``stride``) steps per call and records the step size it reads."""

    def __init__(self, model, step_size, stride=3):
        super().__init__(model)
        self.stride = stride
        self.register_scheduler("step_size", step_size)
        self.seen: list[tuple[int, int, float]] = []

    def steps_per_call(self, state, ctx):
        return self.stride

    def step(self, state, ctx):
        self.seen.append((ctx.i, ctx.n, self.get_scheduled_value("step_size")))
        return state


@pytest.mark.parametrize("n_steps", [9, 8])
def test_schedules_advance_by_the_steps_each_call_takes(n_steps):
    start, end, span = 1.0, 0.0, 10  # value at step k: 1 - k / 10
    sampler = MacroSteps(HarmonicModel(), LinearScheduler(start, end, span))
    sampler.sample(x=torch.zeros(2, 1), n_steps=n_steps, reset_schedulers=False)
    firsts = list(range(0, n_steps, 3))
    assert [(i, n) for i, n, _ in sampler.seen] == [(k, min(3, n_steps - k)) for k in firsts]
    for k, _, value in sampler.seen:
        assert value == pytest.approx(start + k * (end - start) / span)
    # after the call the schedule stands at step n_steps, as after n_steps single steps
    assert sampler.get_scheduled_value("step_size") == pytest.approx(1 - n_steps / span)


@pytest.mark.parametrize("stride", [1, 3])
def test_constant_and_moving_schedules_end_a_call_at_the_same_position(stride):
    sampler = MacroSteps(HarmonicModel(), ConstantScheduler(0.5), stride=stride)
    sampler.register_scheduler("noise", LinearScheduler(1.0, 0.0, 100))
    for calls in (1, 2):  # reset_schedulers=False: the positions add up over calls
        sampler.sample(x=torch.zeros(2, 1), n_steps=8, reset_schedulers=False)
        counts = {k: s.step_count for k, s in sampler.get_schedulers().items()}
        assert counts == {"step_size": 8 * calls, "noise": 8 * calls}
    assert sampler.get_scheduled_value("step_size") == 0.5
