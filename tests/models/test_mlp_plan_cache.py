"""``MLPEnergy.gradient`` reuses its explicit-pass layer plan only while it is valid."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.models import MLPEnergy


def _autograd(model: MLPEnergy, x: torch.Tensor) -> torch.Tensor:
    xg = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xg).sum(), xg)
    return g


def _model(act="silu") -> MLPEnergy:
    torch.manual_seed(0)
    return MLPEnergy(2, (16, 16), act, dtype=torch.float64)


def _x() -> torch.Tensor:
    return torch.randn(32, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_plan_is_reused_and_result_unchanged():
    m, x = _model(), _x()
    first = m.gradient(x)
    assert m._explicit_plan(x, None) is not None
    plan = m._plan_cache["plan"]
    m._explicit_plan(x, None)
    assert m._plan_cache["plan"] is plan  # built once
    assert torch.equal(m.gradient(x), first)
    torch.testing.assert_close(first, _autograd(m, x), rtol=1e-12, atol=1e-12)


def test_replaced_layer_or_parameter_rebuilds_the_plan():
    m, x = _model(), _x()
    m.gradient(x)
    m.net[2] = nn.Linear(16, 16, dtype=torch.float64)  # a new module
    torch.testing.assert_close(m.gradient(x), _autograd(m, x), rtol=1e-12, atol=1e-12)
    m.net[0].weight = nn.Parameter(torch.randn(16, 2, dtype=torch.float64))  # a new tensor
    torch.testing.assert_close(m.gradient(x), _autograd(m, x), rtol=1e-12, atol=1e-12)
    m.net[1] = nn.Tanh()  # another activation: its own backward
    torch.testing.assert_close(m.gradient(x), _autograd(m, x), rtol=1e-12, atol=1e-12)


def test_activation_settings_changed_after_the_first_call_are_read():
    m, x = _model("leaky_relu"), _x()
    m.gradient(x)
    for act in (m.net[1], m.net[3]):
        act.negative_slope = 0.3
    torch.testing.assert_close(m.gradient(x), _autograd(m, x), rtol=1e-12, atol=1e-12)
    m.net[1].inplace = True  # in-place activations take the autograd path
    assert m._explicit_plan(x, None) is None


def test_dtype_conversion_after_the_first_call_is_followed():
    torch.manual_seed(0)
    m = MLPEnergy(2, (16, 16))
    x32 = _x().float()
    m.gradient(x32)
    m.double()  # converts the parameters the cached plan holds
    x = _x()
    assert m._explicit_plan(x32, None) is None  # float32 input vs float64 weights
    assert m._explicit_plan(x, None) is not None
    torch.testing.assert_close(m.gradient(x), _autograd(m, x), rtol=1e-12, atol=1e-12)


def test_gradient_function_equals_gradient_and_falls_back():
    m, x = _model(), _x()
    fn = m.gradient_function()
    assert torch.equal(fn(x), m.gradient(x))
    torch.testing.assert_close(fn(x), _autograd(m, x), rtol=1e-12, atol=1e-12)
    x3 = x[:, None, :]  # (B, 1, 2): not (B, input_dim), the general path
    assert fn(x3).shape == x3.shape
    torch.testing.assert_close(fn(x3), m.gradient(x3))
    m.explicit_gradient = False
    assert m.gradient_function() == m.gradient


def test_subclass_redefining_forward_gets_its_own_gradient():
    class Shifted(MLPEnergy):
        def forward(self, x):
            return super().forward(x) + 10.0 * x.square().sum(-1)

    torch.manual_seed(0)
    m, x = Shifted(2, (16, 16), dtype=torch.float64), _x()
    ref = _autograd(m, x)
    torch.testing.assert_close(m.gradient(x), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.gradient_function()(x), ref, rtol=1e-12, atol=1e-12)


def test_weight_norm_and_spectral_norm_layers_take_the_module_call():
    """``weight_norm``/``spectral_norm`` (the hook forms) keep ``weight`` as a plain tensor that
    only a forward call refreshes: after an optimizer step the explicit pass would read last
    step's weights. Such layers take the module call, before and after a plan was built."""
    import warnings

    x = _x()
    for norm in (torch.nn.utils.weight_norm, torch.nn.utils.spectral_norm):
        m = _model()
        m.gradient(x)  # the plan is built on plain layers first
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # weight_norm's deprecation
            norm(m.net[2])
        m.eval()  # spectral_norm: no power iteration, so forward is deterministic
        m(x)  # a forward computes the normalised weight
        with torch.no_grad():  # an optimizer step on the underlying parameters
            for p in m.parameters():
                p.add_(0.5 * torch.randn_like(p))
        assert m._explicit_plan(x, None) is None
        for grad in (m.gradient, m.gradient_function()):
            torch.testing.assert_close(grad(x), _autograd(m, x), rtol=1e-12, atol=1e-12)


def _assert_gradients_follow_autograd(m: MLPEnergy, x: torch.Tensor) -> None:
    ref = _autograd(m, x)
    torch.testing.assert_close(m.gradient(x), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.gradient_function()(x), ref, rtol=1e-12, atol=1e-12)


def test_an_activation_whose_class_is_swapped_gets_its_own_backward():
    """Same module object (same id, same ``inplace``), another class: the plan is rebuilt."""
    m, x = _model(), _x()
    m.gradient(x)
    m.gradient_function()  # a plan with SiLU's backward is cached
    m.net[1].__class__ = nn.Tanh
    _assert_gradients_follow_autograd(m, x)
    assert m._explicit_plan(x, None) is not None  # still the explicit pass, with tanh'
    m.net[3].__class__ = nn.ReLU  # SiLU has `inplace` too; ReLU reads it
    _assert_gradients_follow_autograd(m, x)


@pytest.mark.parametrize("layer", [1, 3, 0, 4])  # activations, a hidden and the output Linear
def test_a_layer_given_its_own_forward_takes_autograd(layer):
    """``model.net[k].forward = f`` (the class's backward no longer applies): autograd, and
    the explicit pass again once the instance attribute is removed."""
    m, x = _model(), _x()
    m.gradient(x)
    m.gradient_function()
    mod = m.net[layer]
    mod.forward = torch.tanh if layer % 2 else (lambda h, lin=mod: 2.0 * nn.Linear.forward(lin, h))
    _assert_gradients_follow_autograd(m, x)
    assert m._explicit_plan(x, None) is None
    del mod.forward
    _assert_gradients_follow_autograd(m, x)
    assert m._explicit_plan(x, None) is not None
