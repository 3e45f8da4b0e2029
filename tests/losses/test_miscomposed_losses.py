"""Losses and trainers wired to the wrong model say so at construction, naming both objects.

A contrastive-divergence or Energy Matching loss whose sampler was built on another model
draws its negatives from that model (a warning: an EMA copy or a teacher may be meant); a
trainer whose optimizer holds none of the model's parameters stepped nothing (an error),
and one whose loss module registers none of them warns. All ran silently and returned a
plausible loss. Wrappers that hold the model (as DDP does) and a loss given as a plain
function keep working (closed forms checked).
"""

from __future__ import annotations

import pytest
import torch
from _support.call_kinds import Energy, Velocity
from _support.losses import Quadratic, TinyLangevin
from torch import nn

from torchebm.core.errors import ConfigurationError
from torchebm.losses import (
    BaseTrainer,
    ContrastiveDivergence,
    DenoisingScoreMatching,
    EnergyMatchingLoss,
    EquilibriumMatchingLoss,
    FlowMatchingLoss,
    ParallelTemperingCD,
    PersistentContrastiveDivergence,
    ScoreMatching,
    SlicedScoreMatching,
)


class Wrap(nn.Module):
    """Holds the model as a submodule, as DDP or a guidance wrapper does."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)


class MeanEnergy(nn.Module):
    """``loss = mean E(x)``: a loss module built on ``model``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).mean()


SAMPLING_LOSSES = {
    "cd": ContrastiveDivergence,
    "pcd": PersistentContrastiveDivergence,
    "ptcd": ParallelTemperingCD,
    "energy_matching": lambda model, sampler: EnergyMatchingLoss(model, sampler=sampler),
}


@pytest.mark.parametrize("loss", SAMPLING_LOSSES)
def test_a_sampler_built_on_another_model_warns(loss):
    with pytest.warns(UserWarning, match=r"sampler\.model \(Quadratic\) shares no") as seen:
        SAMPLING_LOSSES[loss](Quadratic(), TinyLangevin(Quadratic()))
    assert seen[0].filename == __file__  # at the user's line


class Headed(nn.Module):
    """``E = shared(x) + v/2 |x|^2``: a trainable ``v`` on a (frozen) shared energy."""

    def __init__(self, shared):
        super().__init__()
        self.shared, self.v = shared, nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        return self.shared(x) + 0.5 * self.v * x.reshape(x.shape[0], -1).pow(2).sum(1)


@pytest.mark.parametrize("loss", SAMPLING_LOSSES)
def test_a_sampler_on_another_model_with_a_shared_frozen_part_warns(loss):
    # two models on one frozen backbone are two models: the negatives come from the other
    backbone = Quadratic().requires_grad_(False)
    with pytest.warns(UserWarning, match=r"sampler\.model \(Headed\) shares no trainable"):
        SAMPLING_LOSSES[loss](Headed(backbone), TinyLangevin(Headed(backbone)))


def test_a_sampler_on_a_wrapper_of_the_model_draws_from_it():
    # noise-free Langevin on E = w|x|^2/2: k steps give x (1 - h w)^k (float64 reference)
    q = Quadratic(w=0.3)
    cd = ContrastiveDivergence(q, TinyLangevin(Wrap(q), step_size=0.05, noise_scale=0.0), 3)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    _, negatives = cd(x)
    torch.testing.assert_close(negatives.double(), x.double() * (1 - 0.05 * 0.3) ** 3)


def test_a_trainer_whose_optimizer_steps_none_of_the_model_is_refused():
    q, other = Quadratic(), Quadratic()
    opt = torch.optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(ConfigurationError, match="optimizer steps none"):
        BaseTrainer(q, opt, MeanEnergy(q))


def test_a_trainer_whose_loss_holds_another_model_warns():
    # a warning: a loss may reach the model through an unregistered reference
    q, other = Quadratic(), Quadratic()
    with pytest.warns(
        UserWarning, match=r"loss_fn \(MeanEnergy, built on Quadratic\) registers no"
    ):
        BaseTrainer(q, torch.optim.SGD(q.parameters(), lr=0.1), MeanEnergy(other))


@pytest.mark.parametrize("form", ["module", "wrapper", "function"])
def test_a_trainer_wired_to_its_model_takes_the_sgd_step(form):
    # loss = mean w|x|^2/2, d loss/dw = mean |x|^2/2: one SGD step moves w by -lr times it
    q = Quadratic(w=0.3)
    model = Wrap(q) if form == "wrapper" else q
    loss_fn = (lambda x: q(x).mean()) if form == "function" else MeanEnergy(q)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    BaseTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn).train_step(x)
    expected = 0.3 - 0.1 * 0.5 * x.double().pow(2).sum(1).mean()
    assert abs(q.w.item() - expected.item()) < 1e-6


# A model whose signature refuses the loss's call (conditioning to an unconditional model,
# a field ``forward(x, t)`` to an energy loss, an energy to a flow loss) raised Python's
# TypeError from inside the loss; now a ConfigurationError (a TypeError too) naming the loss,
# the call and what it accepts, raised from the original.


ENERGY_LOSSES = {
    "cd": lambda m: ContrastiveDivergence(m, TinyLangevin(m), k_steps=1),
    "score-matching": ScoreMatching,
    "sliced": SlicedScoreMatching,
    "denoising": DenoisingScoreMatching,
    "energy-matching": EnergyMatchingLoss,
}
FIELD_LOSSES = {"flow-matching": FlowMatchingLoss, "eqm": EquilibriumMatchingLoss}
X8 = torch.randn(8, 2, generator=torch.Generator().manual_seed(3))


def _refused(loss, **kw):
    with pytest.raises(ConfigurationError) as info:
        loss(X8, **kw)
    err = info.value
    assert isinstance(err, TypeError) and type(err.__cause__) is TypeError
    return str(err)


@pytest.mark.parametrize("loss", [*ENERGY_LOSSES, *FIELD_LOSSES])
def test_conditioning_for_an_unconditional_model_names_the_loss_and_call(loss):
    field = loss in FIELD_LOSSES
    fn = FIELD_LOSSES[loss](Velocity()) if field else ENERGY_LOSSES[loss](Energy())
    msg = _refused(fn, model_kwargs={"y": torch.arange(8) % 3})
    call = "model(x, t, y=...)" if field else "model(x, y=...)"
    assert f"{type(fn).__name__} calls {call} but {type(fn.model).__name__}.forward" in msg
    assert "takes no conditioning ['y']" in msg


@pytest.mark.parametrize("loss", [*ENERGY_LOSSES, *FIELD_LOSSES])
def test_a_model_of_the_other_kind_names_the_loss_and_call(loss):
    if loss in FIELD_LOSSES:
        fn = FIELD_LOSSES[loss](Energy())
        msg = _refused(fn)
        assert f"{type(fn).__name__} calls model(x, t) but Energy.forward(x) refuses it" in msg
        assert "accepts a velocity or score field" in msg
    else:
        fn = ENERGY_LOSSES[loss](Velocity())  # CD: its sampler calls the model first
        msg = _refused(fn)
        assert f"{type(fn).__name__} calls model(x) but Velocity.forward(x, t) refuses it" in msg
        assert "accepts an energy" in msg


@pytest.mark.parametrize("loss", [*ENERGY_LOSSES, *FIELD_LOSSES])
def test_a_loss_given_as_the_model_is_refused_at_construction(loss):
    build = {**ENERGY_LOSSES, **FIELD_LOSSES}[loss]
    with pytest.raises(TypeError, match=r"requires a model .* got the loss ScoreMatching"):
        build(ScoreMatching(Energy()))
