"""State dicts of torchebm 0.8.9's schedulers, samplers and losses load here, strictly (torch
>= 2.5, whose public load pre-hook fills what 0.8.9 did not save) or with ``strict=False``,
and restore what they hold (fixture: ``tools/make_089_model_fixtures.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchebm.core import CosineScheduler, DoubleWellModel
from torchebm.losses import ContrastiveDivergence, EquilibriumMatchingLoss
from torchebm.samplers import LangevinDynamics

ROOT = Path(__file__).resolve().parents[1]
STATES = torch.load(ROOT / "models" / "fixtures" / "models_089.pt", weights_only=False)["states"]
# the public nn.Module.register_load_state_dict_pre_hook (torch >= 2.5) makes strict loads work
STRICT = [False] + ([True] if hasattr(torch.nn.Module, "register_load_state_dict_pre_hook") else [])


def test_scheduler_state_restores_the_schedule_position():
    spec = STATES["scheduler"]
    sched = CosineScheduler(**spec["kwargs"])
    sched.load_state_dict(spec["state"])
    assert sched.step_count == spec["state"]["step_count"] == 3
    assert sched.current_value == spec["state"]["current_value"]
    # the next value continues the cosine schedule from step 3
    fresh = CosineScheduler(**spec["kwargs"])
    for _ in range(4):
        want = fresh.step()
    assert abs(sched.step() - want) < 1e-12


@pytest.mark.parametrize("strict", STRICT)
def test_sampler_state_loads(strict):
    sampler = LangevinDynamics(DoubleWellModel(), step_size=0.01, noise_scale=0.5)
    sampler.step_schedulers()  # a schedule position that the old file must not reset
    before = sampler.get_extra_state()
    result = sampler.load_state_dict(STATES["sampler"]["state"], strict=strict)
    # 0.8.9 saved its integrator's Butcher tableau as buffers (dropped: the tableau is the
    # class's) and no extra state (this version's schedulers keep their current state)
    if strict:
        assert not result.missing_keys and not result.unexpected_keys
    else:
        assert set(result.missing_keys) <= {"_extra_state"}
        assert set(result.unexpected_keys) <= set(STATES["sampler"]["state"])
    assert sampler.get_extra_state() == before
    x = sampler.sample(dim=2, n_samples=8, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (8, 2) and torch.isfinite(x).all()


@pytest.mark.parametrize("strict", STRICT)
def test_cd_loss_state_restores_the_replay_buffer_into_a_fresh_loss(strict):
    state = STATES["cd_loss"]["state"]
    model = DoubleWellModel()
    cd = ContrastiveDivergence(
        model, LangevinDynamics(model, step_size=0.01), k_steps=2, persistent=True, buffer_size=16
    )
    cd.load_state_dict(
        state, strict=strict
    )  # no initialize_buffer(): the buffer comes from the file
    assert torch.equal(cd.replay_buffer, state["replay_buffer"])
    assert int(cd.buffer_ptr) == int(state["buffer_ptr"]) == 5
    # 0.8.9 kept no chain ages: they start at 0, and training continues from the buffer
    assert torch.equal(cd.buffer_age, torch.zeros(16, dtype=torch.long))
    loss, negatives = cd(torch.randn(8, 2, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(loss) and negatives.shape == (8, 2)
    assert torch.equal(cd.buffer_age[5:13], torch.full((8,), 2))  # 8 chains written at ptr 5


@pytest.mark.parametrize("strict", STRICT)
def test_eqm_loss_state_restores_the_model_weights(strict):
    state = STATES["eqm_loss"]["state"]
    eqm = EquilibriumMatchingLoss(torch.nn.Linear(2, 2))
    result = eqm.load_state_dict(state, strict=strict)
    assert set(result.missing_keys) <= {"_extra_state"} and not result.unexpected_keys
    assert torch.equal(eqm.model.weight, state["model.weight"])
    with pytest.raises(RuntimeError, match="model.bias"):  # strict still names a missing key
        eqm.load_state_dict({"model.weight": state["model.weight"]})
