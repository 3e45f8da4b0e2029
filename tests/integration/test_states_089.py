"""State dicts of torchebm 0.8.9's schedulers, samplers and losses load here with
``strict=False`` and restore what they hold (fixture: ``tools/make_089_model_fixtures.py``)."""

from __future__ import annotations

from pathlib import Path

import torch

from torchebm.core import CosineScheduler, DoubleWellModel
from torchebm.losses import ContrastiveDivergence, EquilibriumMatchingLoss
from torchebm.samplers import LangevinDynamics

ROOT = Path(__file__).resolve().parents[1]
STATES = torch.load(ROOT / "models" / "fixtures" / "models_089.pt", weights_only=False)["states"]


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


def test_sampler_state_loads_non_strict():
    sampler = LangevinDynamics(DoubleWellModel(), step_size=0.01)
    result = sampler.load_state_dict(STATES["sampler"]["state"], strict=False)
    # 0.8.9's integrator scratch buffers are unexpected; this version's own extra state
    # (schedulers, counters) is absent from the old file and keeps its defaults
    assert set(result.missing_keys) <= {"_extra_state"}
    assert set(result.unexpected_keys) == set(STATES["sampler"]["state"])
    x = sampler.sample(dim=2, n_samples=8, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (8, 2) and torch.isfinite(x).all()


def test_cd_loss_state_restores_the_replay_buffer():
    state = STATES["cd_loss"]["state"]
    model = DoubleWellModel()
    cd = ContrastiveDivergence(
        model, LangevinDynamics(model, step_size=0.01), k_steps=2, persistent=True, buffer_size=16
    )
    cd.initialize_buffer((2,))
    cd.load_state_dict(state, strict=False)
    assert torch.equal(cd.replay_buffer, state["replay_buffer"])
    assert int(cd.buffer_ptr) == int(state["buffer_ptr"]) == 5


def test_eqm_loss_state_restores_the_model_weights():
    state = STATES["eqm_loss"]["state"]
    eqm = EquilibriumMatchingLoss(torch.nn.Linear(2, 2))
    result = eqm.load_state_dict(state, strict=False)
    assert set(result.missing_keys) <= {"_extra_state"} and not result.unexpected_keys
    assert torch.equal(eqm.model.weight, state["model.weight"])
