"""BaseTrainer: training mode at every epoch, steps the GradScaler skips, the batch dtype,
and the warnings for options that would do nothing (0.8.9's behaviour is the reference for
the first and third)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from torchebm.core import LinearScheduler, Schedulable
from torchebm.losses import BaseTrainer


def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))


def test_every_epoch_trains_in_training_mode_after_a_validate_fn_called_eval():
    model = _bn_model()
    trainer = BaseTrainer(
        model, torch.optim.SGD(model.parameters(), lr=0.01), lambda x: model(x).square().mean()
    )
    modes = []

    def validate(tr):
        tr.model.eval()
        return {}

    class Record:
        def on_batch_end(self, trainer, batch_idx, metrics):
            modes.append(trainer.model.training)

    trainer.callbacks.append(Record())
    trainer.train(torch.randn(4, 8, 2, generator=torch.Generator().manual_seed(1)), 3,
                  validate_fn=validate)  # fmt: skip
    # 3 epochs of 4 batches: BatchNorm tracked only the first epoch's 4 before
    assert modes == [True] * 12 and int(model[1].num_batches_tracked) == 12


def test_a_model_built_in_eval_mode_trains_in_training_mode():
    model = _bn_model().eval()
    trainer = BaseTrainer(
        model, torch.optim.SGD(model.parameters(), lr=0.01), lambda x: model(x).square().mean()
    )
    trainer.train(torch.randn(4, 8, 2), 2)
    assert int(model[1].num_batches_tracked) == 8


class _ScheduledLoss(Schedulable, nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self._register_param("scale", LinearScheduler(0.5, 0.1, 10))

    def forward(self, x):
        return self.get_scheduled_value("scale") * self.model(x).square().mean()


def test_a_step_the_grad_scaler_skips_is_counted_as_skipped_and_steps_no_scheduler():
    # an overflow: the scaler skips optimizer.step(); the trainer counted it as a step and
    # stepped the LR scheduler and the loss's schedules (warm-ups ran ahead)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = _ScheduledLoss(model)
    trainer = BaseTrainer(
        model, opt, loss, lr_scheduler=torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)
    )
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=3e38)  # the CUDA path, on the CPU
    before = [p.detach().clone() for p in model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch: "lr_scheduler.step() before optimizer.step()"
        trainer.train_step(100 * torch.randn(8, 2, generator=torch.Generator().manual_seed(2)))
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert trainer.step == 0 and trainer.skipped_steps == 1
    assert opt.param_groups[0]["lr"] == 0.1 and loss.get_scheduled_value("scale") == 0.5
    trainer.train_step(torch.randn(8, 2))  # a finite step at the lowered scale goes through
    assert trainer.step == 1 and opt.param_groups[0]["lr"] == 0.05


def test_dtype_casts_the_floating_batches_as_0_8_9_did():
    model = nn.Linear(2, 1)
    seen = []

    def loss(x, model_kwargs=None):
        seen.append((x.dtype, model_kwargs["y"].dtype))
        return model(x).square().mean()

    trainer = BaseTrainer(
        model, torch.optim.SGD(model.parameters(), lr=0.1), loss, dtype=torch.float64
    )
    trainer.train_step((torch.randn(4, 2), torch.tensor([0, 1, 0, 1])))
    assert seen == [(torch.float64, torch.int64)] and model.weight.dtype == torch.float64


def test_options_that_would_do_nothing_warn():
    model = nn.Linear(2, 1).double()
    with pytest.warns(UserWarning, match="no effect on the float64 parameters"):
        BaseTrainer(
            model, torch.optim.SGD(model.parameters(), lr=0.1), lambda x: model(x).sum(),
            use_mixed_precision=True, amp_dtype=torch.bfloat16,
        )  # fmt: skip
