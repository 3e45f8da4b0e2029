"""Fast paths of core agree with the generic path: the closed-form gradients of the analytic
models keep `BaseModel.gradient`'s contract (detached), and a module's cached placement
follows a `.to()` of the module tree it belongs to (even one called on a child)."""

import pytest
import torch
from torch import nn

from torchebm.core import (
    AckleyModel,
    BaseModel,
    DoubleWellModel,
    GaussianModel,
    HarmonicModel,
    RosenbrockModel,
    TorchEBMModule,
)

F64 = torch.float64
ANALYTIC = [
    lambda: GaussianModel(torch.tensor([0.5, -1.0]), torch.eye(2) * 2.0, dtype=F64),
    lambda: DoubleWellModel(barrier_height=3.0, b=1.5, dtype=F64),
    lambda: HarmonicModel(k=2.5, dtype=F64),
    lambda: AckleyModel(dtype=F64),
    lambda: RosenbrockModel(a=1.0, b=5.0, dtype=F64),
]


@pytest.mark.parametrize("make", ANALYTIC)
def test_closed_form_gradient_of_an_input_requiring_grad_is_detached(make):
    """`BaseModel.gradient` returns a detached gradient whatever ``x`` requires; the closed
    form used to return a tensor attached to ``x``'s graph (``requires_grad=True``), so a
    caller differentiating it got a second derivative that the generic path refuses."""
    model = make()
    x = torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    xr = x.clone().requires_grad_(True)
    generic = BaseModel.gradient(model, xr)
    g = model.gradient(xr)
    assert not generic.requires_grad
    assert not g.requires_grad and g.grad_fn is None
    torch.testing.assert_close(g, generic, rtol=1e-12, atol=1e-12)
    assert xr.grad is None


class _Holder(TorchEBMModule):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner


def test_placement_follows_a_move_of_a_child_after_it_was_read():
    """The parent's placement is cached; moving the child (``.to`` on the child, e.g. a model
    inside a sampler) must not leave the parent reporting the old dtype."""
    inner = _Holder(nn.Linear(2, 2))
    outer = _Holder(inner)
    assert outer.dtype == torch.float32  # read once: cached
    inner.to(F64)
    assert inner.dtype == F64
    assert outer.dtype == F64  # was float32 (stale cache)
    inner.inner.to(torch.float16)  # a plain nn.Module below: no TorchEBMModule hook runs
    assert inner.dtype == torch.float16 and outer.dtype == torch.float16


@pytest.mark.parametrize("make", ANALYTIC)
def test_forward_replaced_on_the_instance_gets_the_autograd_gradient(make):
    """``model.forward = f`` makes ``f`` the energy (``model(x)`` calls it): the closed form of
    the class no longer matches it, neither in ``gradient`` nor in the samplers'
    ``gradient_function``."""
    model = make()
    model.forward = lambda x: 1.5 * x.square().sum(-1)  # grad = 3 x, by hand
    x = torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.gradient(x), 3.0 * x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.gradient_function()(x), 3.0 * x, rtol=1e-12, atol=1e-12)
