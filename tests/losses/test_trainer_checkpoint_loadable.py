"""`BaseTrainer.save_checkpoint` refuses a state that ``torch.load(weights_only=True)`` cannot
read back wherever it sits, not only in the callbacks: a user's schedule of the loss
(concepts.md, "Schedules") that kept a numpy array was written without complaint, and the
run failed only when resumed (``UnpicklingError``). A plain schedule still saves and resumes."""

from __future__ import annotations

import pytest
import torch
from _support.losses import MLPEnergy

from torchebm.core import BaseScheduler
from torchebm.losses import BaseTrainer, DenoisingScoreMatching

np = pytest.importorskip("numpy")


class TableScheduler(BaseScheduler):
    """Piecewise-constant values read from a table (kept as given)."""

    def __init__(self, table):
        self.table = table
        super().__init__(float(table[0]))

    def compute_value(self) -> float:
        return float(self.table[min(self.step_count, len(self.table) - 1)])


def _trainer(table) -> BaseTrainer:
    torch.manual_seed(0)
    model = MLPEnergy(2, 8)
    loss = DenoisingScoreMatching(model, noise_scale=TableScheduler(table))
    return BaseTrainer(model, torch.optim.SGD(model.parameters(), lr=0.01), loss, seed=0)


def _train(trainer: BaseTrainer) -> None:
    data = [torch.randn(16, 2, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    trainer.train(data, 1)


def test_a_schedule_holding_a_numpy_array_is_refused_when_saved(tmp_path):
    trainer = _trainer(np.asarray([0.5, 0.3, 0.2, 0.1]))
    _train(trainer)
    with pytest.raises(TypeError, match=r"ranks\[0\]\.loss holds a value .* numpy"):
        trainer.save_checkpoint(tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_a_plain_schedule_saves_and_resumes(tmp_path):
    trainer = _trainer([0.5, 0.3, 0.2, 0.1])
    _train(trainer)
    trainer.save_checkpoint(tmp_path / "ok.pt")
    resumed = _trainer([0.5, 0.3, 0.2, 0.1])
    resumed.load_checkpoint(tmp_path / "ok.pt")
    assert resumed.loss_fn.noise_scale == trainer.loss_fn.noise_scale == 0.1  # the 4th entry
    for a, b in zip(resumed.model.parameters(), trainer.model.parameters()):
        assert torch.equal(a, b)


def test_a_value_that_cannot_be_pickled_is_refused_as_unloadable(tmp_path):
    # torch.save itself fails on a local function (AttributeError): it is the same refusal,
    # a TypeError naming the part, before anything is written
    trainer = _trainer([0.5, 0.3])
    trainer.loss_fn.get_schedulers()["noise_scale"].table = [0.5, lambda: 0.3]
    with pytest.raises(TypeError, match=r"ranks\[0\]\.loss holds a value"):
        trainer.save_checkpoint(tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()
