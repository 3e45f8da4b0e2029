"""`BaseTrainer` resumes a loss whose buffers are registered as ``None`` and filled lazily
(a replay memory): the checkpoint's tensor is loaded into them, through public
``nn.Module`` means (a registered buffer is assigned, so registration hooks run)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.module import register_module_buffer_registration_hook

from torchebm.core import TorchEBMModule
from torchebm.losses import BaseTrainer


class Quadratic(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))

    def forward(self, x):
        return 0.5 * (self.w * x**2).sum(-1)


class LazyLoss(TorchEBMModule):
    """Remembers the last batch in a nested, lazily filled float64 buffer."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.memory = nn.Module()
        self.memory.register_buffer("last", None)
        self.register_buffer("scratch", None, persistent=False)
        self.plain = None  # an attribute, not a buffer

    def forward(self, x, model_kwargs=None, generator=None):
        self.memory.last = x.detach().double() * 3.0
        return self.model(x).mean()


def _trainer() -> BaseTrainer:
    model = Quadratic()
    return BaseTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), LazyLoss(model), seed=0)


def _x() -> torch.Tensor:
    return torch.randn(4, 2, generator=torch.Generator().manual_seed(0))


def test_a_nested_lazy_buffer_is_restored_with_its_dtype_and_persistence():
    saved = _trainer()
    saved.train_step(_x())
    state = saved.state_dict()
    assert set(state["ranks"][0]["loss"]) == {"memory.last"}
    resumed = _trainer()
    assert resumed.loss_fn.memory.last is None
    resumed.load_state_dict(state)
    last = resumed.loss_fn.memory.last
    assert last.dtype == torch.float64
    torch.testing.assert_close(last, _x().double() * 3.0, rtol=0, atol=0)
    assert "last" in dict(resumed.loss_fn.memory.named_buffers())
    assert "memory.last" in resumed.loss_fn.state_dict()  # still persistent
    assert resumed.loss_fn.scratch is None and resumed.loss_fn.plain is None


def test_the_buffer_is_registered_through_nn_module():
    """Assignment goes through ``register_buffer``: global buffer-registration hooks see it
    (writing the private buffer dict bypassed them)."""
    saved = _trainer()
    saved.train_step(_x())
    state = saved.state_dict()
    resumed = _trainer()
    seen: list[str] = []
    handle = register_module_buffer_registration_hook(lambda m, name, t: seen.append(name))
    try:
        resumed.load_state_dict(state)
    finally:
        handle.remove()
    assert "last" in seen


@pytest.mark.parametrize("name", ["scratch", "plain"])
def test_a_key_for_a_non_persistent_buffer_or_an_attribute_is_unexpected(name):
    saved = _trainer()
    saved.train_step(_x())
    state = saved.state_dict()
    state["ranks"][0]["loss"][name] = torch.zeros(3)
    resumed = _trainer()
    with pytest.raises(ValueError, match=f"unexpected keys \\['{name}'\\]"):
        resumed.load_state_dict(state)
    assert getattr(resumed.loss_fn, name) is None  # left as it was
    assert "scratch" not in resumed.loss_fn.state_dict()
