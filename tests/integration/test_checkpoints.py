"""Checkpoints: samplers, losses (PCD / PT-CD chains), schedulers and trainers round-trip
through ``state_dict``/``load_state_dict`` and ``torch.save``/``torch.load(weights_only=True)``,
and a run resumed from a checkpoint continues bit-identically to an unbroken run."""

from __future__ import annotations

import io
from typing import Any, Callable

import pytest
import torch
from integration_helpers import D2, Field, Potential, gauss, gen

import torchebm.losses as L
import torchebm.samplers as S
from torchebm.core import (
    BaseTrainer,
    ConstantScheduler,
    CosineScheduler,
    ExponentialDecayScheduler,
    LinearScheduler,
    MultiStepScheduler,
    TemperatureScheduler,
    WarmupScheduler,
)
from torchebm.losses._trainers import ContrastiveDivergenceTrainer


def X(k: int = 0, n: int = 8) -> torch.Tensor:
    return torch.randn(n, D2, generator=gen(100 + k)) * 0.7 + 0.5


def roundtrip(state: Any) -> Any:
    """torch.save then torch.load(weights_only=True): only plain types and tensors survive."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# ---------------------------------------------------------------------------- schedulers
SCHEDULERS: dict[str, Callable[[], Any]] = {
    "Constant": lambda: ConstantScheduler(0.3),
    "ExponentialDecay": lambda: ExponentialDecayScheduler(1.0, 0.7, min_value=0.05),
    "Linear": lambda: LinearScheduler(1.0, 0.0, 7),
    "Cosine": lambda: CosineScheduler(1.0, 0.1, 7),
    "MultiStep": lambda: MultiStepScheduler(1.0, [2, 4], gamma=0.5),
    "Warmup": lambda: WarmupScheduler(CosineScheduler(1.0, 0.0, 6), 3, 0.1),
    "Temperature": lambda: TemperatureScheduler(0.2, tau_star=0.3, n_steps=6),
}


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_state_round_trip_continues_identically(name):
    s = SCHEDULERS[name]()
    for _ in range(3):
        s.step()
    state = roundtrip(s.state_dict())
    fresh = SCHEDULERS[name]()
    fresh.load_state_dict(state)
    assert fresh.get_value() == s.get_value()
    assert [fresh.step() for _ in range(6)] == [s.step() for _ in range(6)]


# ---------------------------------------------------------------------------- samplers
SAMPLERS: dict[str, Callable[[], Any]] = {
    "LangevinDynamics": lambda: S.LangevinDynamics(
        Potential(),
        step_size=LinearScheduler(0.1, 0.01, 10),
        noise_scale=CosineScheduler(1.0, 0.5, 10),
    ),
    "HamiltonianMonteCarlo": lambda: S.HamiltonianMonteCarlo(
        gauss(), step_size=ExponentialDecayScheduler(0.3, 0.9), n_leapfrog_steps=3
    ),
    "GradientDescentSampler": lambda: S.GradientDescentSampler(
        Potential(), step_size=MultiStepScheduler(0.1, [2, 5], 0.5)
    ),
    "NesterovSampler": lambda: S.NesterovSampler(
        Potential(), step_size=LinearScheduler(0.1, 0.0, 9)
    ),
    "FlowSampler(sde)": lambda: S.FlowSampler(
        Field(), mode="sde", sample_eps=LinearScheduler(0.05, 0.01, 10)
    ),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_state_dict_round_trip_continues_identically(name):
    """Schedules driven across calls (reset_schedulers=False) survive a checkpoint."""
    a = SAMPLERS[name]()
    g = gen(0)
    x = X()
    x = a.sample(x=x, n_steps=3, reset_schedulers=False, generator=g)
    state = roundtrip(a.state_dict())
    g_state = g.get_state()
    b = SAMPLERS[name]()
    b.load_state_dict(state)
    assert a.get_schedulers().keys() == b.get_schedulers().keys()
    for k in a.get_schedulers():
        assert a.get_scheduled_value(k) == b.get_scheduled_value(k), k
    out_a = a.sample(x=x, n_steps=4, reset_schedulers=False, generator=g)
    g2 = torch.Generator()
    g2.set_state(g_state)
    out_b = b.sample(x=x, n_steps=4, reset_schedulers=False, generator=g2)
    assert torch.equal(out_a, out_b)


# ---------------------------------------------------------------------------- losses
def _cd(kind: str):
    m = Potential()
    sampler = S.LangevinDynamics(m, step_size=0.05)
    if kind == "pcd":
        return L.PersistentContrastiveDivergence(
            m, sampler, k_steps=2, buffer_size=12, new_sample_ratio=0.3
        )
    if kind == "cd-persistent":
        return L.ContrastiveDivergence(m, sampler, k_steps=2, persistent=True, buffer_size=12)
    if kind == "ptcd":
        return L.ParallelTemperingCD(m, sampler, temperatures=(1.0, 2.0, 4.0), k_steps=2)
    if kind == "ptcd-odd":  # 3 swap rounds per call: the even/odd pair parity alternates
        return L.ParallelTemperingCD(m, sampler, temperatures=(1.0, 2.0, 4.0), k_steps=3)
    if kind == "ptcd-interval":  # a swap round every 5 steps: calls end inside the interval
        temps = (1.0, 2.0, 4.0, 8.0)
        return L.ParallelTemperingCD(m, sampler, temperatures=temps, k_steps=2, swap_every=5)
    raise ValueError(kind)


def _chain_cases():
    # ptcd-odd: 3 swap rounds per call, so after an odd number of calls the even/odd
    # neighbour parity has flipped and must be restored from the checkpoint
    for kind in ["pcd", "cd-persistent", "ptcd", "ptcd-odd"]:
        for calls in (1, 2):
            yield pytest.param(kind, calls, id=f"{kind}-{calls}")
    # pcd: 3 calls of 8 rows wrap the 12-row buffer; ptcd-interval: 6 steps, one swap round
    # (even pairs) done, 1 step into the next interval, whose round tries the odd pair only
    yield pytest.param("pcd", 3, id="pcd-wrapped-3")
    yield pytest.param("ptcd-interval", 3, id="ptcd-interval-3")


@pytest.mark.parametrize("kind, calls_before", list(_chain_cases()))
def test_persistent_chains_round_trip_into_a_fresh_loss(kind, calls_before):
    """Persistent state loads into a fresh loss (no initialize_buffer first) and the next
    calls are identical to the unbroken loss's (odd/even call counts: PT-CD swap parity),
    PT-CD's ``swap_acceptance`` included (it was not saved: the pairs no round had tried
    since the resume read 0)."""
    a = _cd(kind)
    g = gen(1)
    for k in range(calls_before):
        a(X(k), generator=g)
    state = roundtrip(a.state_dict())
    g_state = g.get_state()
    b = _cd(kind)
    b.load_state_dict(state)
    g2 = torch.Generator()
    g2.set_state(g_state)
    for k in range(calls_before, calls_before + 3):
        la, na = a(X(k), generator=g)
        lb, nb = b(X(k), generator=g2)
        assert torch.equal(na, nb), f"negatives differ at call {k}"
        assert torch.equal(la.detach(), lb.detach())
        if kind.startswith("ptcd"):
            assert torch.equal(a.swap_acceptance, b.swap_acceptance), f"call {k}"


def test_pcd_buffer_size_mismatch_is_reported():
    a = _cd("pcd")
    a(X(0), generator=gen(0))
    m = Potential()
    small = L.PersistentContrastiveDivergence(
        m, S.LangevinDynamics(m, step_size=0.05), buffer_size=5
    )
    with pytest.raises(RuntimeError, match="buffer_size"):
        small.load_state_dict(a.state_dict())


LOSSES: dict[str, Callable[[], Any]] = {
    "DenoisingScoreMatching": lambda: L.DenoisingScoreMatching(
        Potential(), noise_scale=ExponentialDecayScheduler(0.3, 0.8)
    ),
    "EquilibriumMatchingLoss": lambda: L.EquilibriumMatchingLoss(
        Field(), train_eps=LinearScheduler(0.0, 0.2, 5)
    ),
    "EnergyMatchingLoss": lambda: L.EnergyMatchingLoss(
        Potential(),
        sigma=CosineScheduler(0.2, 0.05, 5),
        lambda_cd=LinearScheduler(0.0, 1.0, 4),
        n_langevin_steps=2,
    ),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_hyperparameter_schedules_round_trip(name):
    a = LOSSES[name]()
    g = gen(2)
    for k in range(2):
        a(X(k), generator=g)
        a.step_schedulers()
    b = LOSSES[name]()
    b.load_state_dict(roundtrip(a.state_dict()))
    for k in a.get_schedulers():
        assert a.get_scheduled_value(k) == b.get_scheduled_value(k), k
    g2 = torch.Generator()
    g2.set_state(g.get_state())
    for k in range(2, 4):
        la, lb = a(X(k), generator=g), b(X(k), generator=g2)
        assert torch.equal(la.detach(), lb.detach())
        a.step_schedulers()
        b.step_schedulers()


# ---------------------------------------------------------------------------- trainers
def _trainer(kind: str, seed: int = 0, **kw) -> BaseTrainer:
    m = Potential()
    if kind == "cd-trainer":
        sampler = S.LangevinDynamics(m, step_size=0.05)
        return ContrastiveDivergenceTrainer(
            m,
            sampler,
            learning_rate=0.02,
            k_steps=2,
            persistent=True,
            buffer_size=16,
            loss_kwargs={"init_steps": 0, "new_sample_ratio": 0.2},
            seed=seed,
            **kw,
        )
    if kind == "pcd":
        loss = L.PersistentContrastiveDivergence(
            m, S.LangevinDynamics(m, step_size=0.05), k_steps=2, buffer_size=16
        )
    elif kind == "ptcd":
        loss = L.ParallelTemperingCD(
            m, S.LangevinDynamics(m, step_size=0.05), (1.0, 3.0), k_steps=2
        )
    elif kind == "dsm":
        loss = L.DenoisingScoreMatching(m, noise_scale=ExponentialDecayScheduler(0.3, 0.9))
    elif kind == "energy-matching":
        loss = L.EnergyMatchingLoss(m, lambda_cd=LinearScheduler(0.0, 1.0, 3), n_langevin_steps=2)
    else:
        raise ValueError(kind)
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    return BaseTrainer(m, opt, loss, seed=seed, lr_scheduler=sched, **kw)


class SaveAt:
    def __init__(self, epoch: int, batch: int, path):
        self.at, self.path = (epoch, batch), path

    def on_batch_end(self, trainer, batch_idx, metrics):
        if (trainer.epoch, batch_idx) == self.at:
            trainer.save_checkpoint(self.path)


def _params(t: BaseTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in t.model.state_dict().items()}


@pytest.mark.parametrize("kind", ["cd-trainer", "pcd", "ptcd", "dsm", "energy-matching"])
@pytest.mark.parametrize("accum, at_batch", [(1, 1), (2, 2)])
def test_resumed_training_is_bit_identical(tmp_path, kind, accum, at_batch):
    loader = [X(k) for k in range(4)]
    ckpt = tmp_path / "ckpt.pt"
    unbroken = _trainer(kind, seed=3, grad_accum_steps=accum, callbacks=[SaveAt(1, at_batch, ckpt)])
    unbroken.train(loader, 3)
    resumed = _trainer(kind, seed=99, grad_accum_steps=accum)  # other seed: overwritten by load
    resumed.load_checkpoint(ckpt)
    resumed.train(loader, 3)
    pa, pb = _params(unbroken), _params(resumed)
    assert all(torch.equal(pa[k], pb[k]) for k in pa), {
        k: (pa[k] - pb[k]).abs().max().item() for k in pa
    }
    assert resumed.step == unbroken.step
    sa, sb = unbroken.loss_fn.state_dict(), resumed.loss_fn.state_dict()
    for k, v in sa.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, sb[k]), k
    assert unbroken.history["train"][2] == resumed.history["train"][2]


def test_cd_trainer_reports_energies_and_fixes_upstream_bug_5():
    """ContrastiveDivergenceTrainer constructs (upstream passed use_mixed_precision into
    the loss and failed) and reports the data and negative energies of each step."""
    t = _trainer("cd-trainer", seed=0)
    with torch.no_grad():
        before = t.model(X(0)).mean()
    out = t.train_step(X(0))
    assert set(out) == {"loss", "pos_energy", "neg_energy"}
    assert torch.equal(out["pos_energy"], before)  # energies of the step, before the update
    assert torch.isfinite(out["neg_energy"]) and t.step == 1
    assert isinstance(t.loss_fn, L.ContrastiveDivergence) and t.loss_fn.persistent
    with pytest.warns(UserWarning, match="requires CUDA"):
        ContrastiveDivergenceTrainer(
            Potential(), S.LangevinDynamics(gauss()), use_mixed_precision=True
        )
    with pytest.raises(ValueError, match="learning_rate"):
        ContrastiveDivergenceTrainer(Potential(), S.LangevinDynamics(gauss()), learning_rate=0.0)


def test_cd_trainer_warns_that_a_learning_rate_beside_an_optimizer_is_not_used():
    # the optimizer keeps its own learning rate: learning_rate=0.5 did nothing, silently
    model = Potential()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match="learning_rate=0.5 is ignored"):
        ContrastiveDivergenceTrainer(model, S.LangevinDynamics(model), opt, learning_rate=0.5)
    assert opt.param_groups[0]["lr"] == 0.1
