"""`BaseTrainer` clips and checks every tensor the optimizer steps, not only the model's.

Before the fix ``max_grad_norm`` and the non-finite check read ``model.parameters()`` only:
a learnable parameter of the loss (a log-partition estimate, a temperature) or any other
tensor in the optimizer was stepped with its raw gradient (an update of norm 100 for a
limit of 0.5 below) and a NaN in its gradient was stepped into the parameter. The 2-rank
runs (its gradient averaged under DDP, FSDP2 and the plain all-reduce) are in
test_trainer_distributed.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.core.errors import NonFiniteError
from torchebm.losses import BaseTrainer

MAX = 0.5
K = 100.0  # dL/dlog_z


class Quadratic(nn.Module):
    """``E(x) = sum_i w_i x_i^2 / 2 + b``."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return 0.5 * (self.w * x**2).sum(-1) + self.b


class WithLogZ(nn.Module):
    """``L = mean E(x) + K log_z``: ``dL/dw = mean x^2 / 2``, ``dL/db = 1``, ``dL/dlog_z = K``."""

    def __init__(self, model, k=K):
        super().__init__()
        self.model, self.k = model, k
        self.log_z = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.model(x).mean() + self.k * self.log_z


def _x() -> torch.Tensor:
    return torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.0]])


def _closed_form_gradient(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([0.5 * (x**2).mean(0), torch.ones(1), torch.full((1,), K)])


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


@pytest.mark.parametrize("groups", ["one", "split"])
def test_max_grad_norm_bounds_the_gradient_of_every_stepped_parameter(groups):
    m = Quadratic()
    loss = WithLogZ(m)
    if groups == "one":
        opt = torch.optim.SGD([*m.parameters(), loss.log_z], lr=1.0)
    else:  # the loss's parameter in a group of its own, listed first
        opt = torch.optim.SGD([{"params": [loss.log_z]}, {"params": list(m.parameters())}], lr=1.0)
    t = BaseTrainer(m, opt, loss, max_grad_norm=MAX)
    before = _flat([m.w, m.b, loss.log_z]).clone()
    t.train_step(_x())
    g = _closed_form_gradient(_x())  # norm 100.04
    clipped = _flat([m.w.grad, m.b.grad, loss.log_z.grad])
    # clip_grad_norm_ scales by max / (norm + 1e-6): the norm is max to 1e-8 relative here
    assert clipped.norm().item() == pytest.approx(MAX, rel=1e-6)
    assert torch.allclose(clipped, g * (MAX / g.norm()), rtol=1e-6, atol=0)
    # SGD(lr=1) stepped exactly the clipped gradients (was an update of norm ~100)
    update = before - _flat([m.w, m.b, loss.log_z])
    assert update.norm().item() == pytest.approx(MAX, rel=1e-6)


def test_a_plain_tensor_in_the_optimizer_is_clipped_too():
    m = Quadratic()
    scale = torch.zeros((), requires_grad=True)  # in the optimizer, in neither module

    def loss_fn(x):
        return m(x).mean() + K * scale

    t = BaseTrainer(
        m, torch.optim.SGD([*m.parameters(), scale], lr=1.0), loss_fn, max_grad_norm=MAX
    )
    t.train_step(_x())
    g = _closed_form_gradient(_x())
    clipped = _flat([m.w.grad, m.b.grad, scale.grad])
    assert clipped.norm().item() == pytest.approx(MAX, rel=1e-6)
    assert torch.allclose(clipped, g * (MAX / g.norm()), rtol=1e-6, atol=0)


@pytest.mark.parametrize("order", ["model", "reversed groups"])
def test_clipping_the_model_alone_is_bitwise_clip_grad_norm(order):
    # the optimizer holds exactly the model's parameters: the clipped gradients are bitwise
    # those of clip_grad_norm_(model.parameters()), as before the change, whatever the
    # order of its parameter groups
    x = 10 * _x()
    m, ref = Quadratic(), Quadratic()
    if order == "model":
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
    else:
        opt = torch.optim.SGD([{"params": [m.b]}, {"params": [m.w]}], lr=0.1)
    t = BaseTrainer(m, opt, lambda x: m(x).square().mean(), max_grad_norm=MAX)
    t.train_step(x)
    ref(x).square().mean().backward()
    nn.utils.clip_grad_norm_(ref.parameters(), MAX)
    assert torch.equal(m.w.grad, ref.w.grad) and torch.equal(m.b.grad, ref.b.grad)
    assert _flat([ref.w.grad, ref.b.grad]).norm().item() == pytest.approx(MAX, rel=1e-5)


class NaNLogZ(WithLogZ):
    """Finite loss, finite model gradients, NaN gradient of ``log_z``."""

    def forward(self, x):
        return self.model(x).mean() + (self.log_z * 0).sqrt() * 0 + self.log_z


def test_a_nan_gradient_of_a_loss_parameter_is_caught_and_named():
    m = Quadratic()
    loss = NaNLogZ(m)
    t = BaseTrainer(m, torch.optim.SGD([*m.parameters(), loss.log_z], lr=0.1), loss)
    with pytest.raises(NonFiniteError) as info:
        t.train_step(_x())
    assert info.value.indices == ["loss_fn.log_z"] and "loss_fn.log_z" in str(info.value)
    assert loss.log_z.item() == 0.0 and torch.equal(m.w.detach(), torch.ones(2))  # no step


def test_a_nan_gradient_of_a_plain_tensor_is_skipped_and_named_by_its_group():
    m = Quadratic()
    extra = torch.zeros((), requires_grad=True)

    def loss_fn(x):
        return m(x).mean() + (extra * 0).sqrt() * 0 + extra

    opt = torch.optim.SGD([{"params": list(m.parameters())}, {"params": [extra]}], lr=0.1)
    t = BaseTrainer(m, opt, loss_fn, nan_policy="skip")
    with pytest.warns(RuntimeWarning, match=r"gradients of \['param_groups\[1\]\[0\]'\]"):
        t.train_step(_x())
    assert t.skipped_steps == 1 and t.step == 0
    assert extra.item() == 0.0 and torch.equal(m.w.detach(), torch.ones(2))


def _logz_trainer() -> tuple[BaseTrainer, WithLogZ]:
    m = Quadratic()
    loss = WithLogZ(m, k=3.0)
    return BaseTrainer(
        m, torch.optim.SGD([*m.parameters(), loss.log_z], lr=0.1), loss, grad_accum_steps=2
    ), loss


def test_a_checkpoint_inside_an_accumulation_window_keeps_the_loss_parameter_gradient():
    # the checkpoint held the pending gradients of the model's parameters only: the resumed
    # window stepped log_z with half its gradient
    unbroken, loss_a = _logz_trainer()
    for k in range(3):
        unbroken.train_step(_x() + k)
    resumed, loss_b = _logz_trainer()
    half, _ = _logz_trainer()
    half.train_step(_x())
    resumed.load_state_dict(half.state_dict())  # one micro-batch into the window
    for k in range(1, 3):
        resumed.train_step(_x() + k)
    assert torch.equal(loss_a.log_z.detach(), loss_b.log_z.detach())
    assert all(
        torch.equal(p, q) for p, q in zip(unbroken.model.parameters(), resumed.model.parameters())
    )
    # a checkpoint of the earlier layout (the model's gradients only) still loads
    old = half.state_dict()
    old["ranks"][0]["grads"] = old["ranks"][0]["grads"][:2]
    again, loss_c = _logz_trainer()
    again.load_state_dict(old)
    assert torch.equal(again.model.w.grad, half.model.w.grad) and loss_c.log_z.grad is None
