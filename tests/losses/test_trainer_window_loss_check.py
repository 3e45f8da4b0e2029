"""nan_policy checks every micro-batch's loss of an accumulation window, not only the last.

A loss whose value is non-finite while its gradient is finite (a non-finite constant or
detached term) in micro-batch 0 of a 2-micro-batch window must raise / be skipped at the
window's optimizer step, as a non-finite loss does without accumulation."""

import pytest
import torch
from _support.losses import Quadratic
from torch import nn

from torchebm.core.errors import NonFiniteError
from torchebm.losses import BaseTrainer


class BadFirstMicro(nn.Module):
    """Non-finite value (finite gradient) on the first call only."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x):
        self.calls += 1
        e = self.model(x).mean()
        return e + torch.tensor(float("nan")) if self.calls == 1 else e


def _trainer(policy):
    torch.manual_seed(0)
    m = Quadratic(1.0)
    return m, BaseTrainer(
        m,
        torch.optim.SGD(m.parameters(), lr=0.1),
        BadFirstMicro(m),
        grad_accum_steps=2,
        nan_policy=policy,
    )


def test_raise_sees_a_non_finite_loss_early_in_the_window():
    m, t = _trainer("raise")
    x = torch.randn(4, 2)
    t.train_step(x)  # micro-batch 0: NaN value, finite gradient
    with pytest.raises(NonFiniteError, match="loss"):
        t.train_step(x)  # micro-batch 1 closes the window
    assert m.w.item() == 1.0


def test_skip_drops_the_window():
    m, t = _trainer("skip")
    x = torch.randn(4, 2)
    t.train_step(x)
    with pytest.warns(RuntimeWarning, match="skipping"):
        t.train_step(x)
    assert t.step == 0 and t.skipped_steps == 1 and m.w.item() == 1.0
