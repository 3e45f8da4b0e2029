"""MLPEnergy and MLPVelocity: the small 2-D backbones."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchebm.core import BaseModel
from torchebm.models import MLPEnergy, MLPVelocity, fourier_time_features


def test_mlp_energy_default_architecture_and_shapes():
    m = MLPEnergy()
    assert isinstance(m, BaseModel)
    linears = [mod for mod in m.net if isinstance(mod, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(2, 64), (64, 64), (64, 1)]
    assert sum(isinstance(mod, nn.SiLU) for mod in m.net) == 2
    x = torch.randn(10, 2)
    assert m(x).shape == (10,)
    g = m.gradient(x)
    assert g.shape == (10, 2) and not g.requires_grad
    # gradient matches a finite difference
    x64 = x.double()
    m64 = MLPEnergy(dtype=torch.float64)
    eps = 1e-6
    e = torch.zeros(2, dtype=torch.float64)
    e[0] = eps
    fd = (m64(x64 + e) - m64(x64 - e)) / (2 * eps)
    torch.testing.assert_close(m64.gradient(x64)[:, 0], fd, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("act", ["relu", "tanh", nn.ELU, nn.LeakyReLU(0.2), "SELU"])
def test_mlp_energy_activations(act):
    m = MLPEnergy(3, hidden_dims=[8, 8, 8], activation=act)
    assert m(torch.randn(4, 3)).shape == (4,)
    assert sum(isinstance(mod, nn.Linear) for mod in m.net) == 4


def test_mlp_energy_validation_and_dtype():
    with pytest.raises(ValueError, match="activation"):
        MLPEnergy(activation="swishy")
    with pytest.raises(TypeError, match="activation"):
        MLPEnergy(activation=3)
    with pytest.raises(ValueError, match="hidden_dims"):
        MLPEnergy(hidden_dims=(64, 0))
    with pytest.raises(ValueError, match="input_dim"):
        MLPEnergy(input_dim=0)
    m = MLPEnergy(2)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        m(torch.randn(4, 3))
    assert MLPEnergy(hidden_dims=16)(torch.randn(2, 2)).shape == (2,)
    m64 = MLPEnergy(dtype=torch.float64)
    assert (
        m64.dtype == torch.float64
        and m64(torch.randn(2, 2, dtype=torch.float64)).dtype == torch.float64
    )
    assert MLPEnergy(4)(torch.randn(3, 2, 2)).shape == (3,)  # (B, ...) flattened


def test_fourier_time_features():
    t = torch.tensor([0.0, 0.25, 1.0])
    f = fourier_time_features(t, 3)
    assert f.shape == (3, 7)
    torch.testing.assert_close(f[:, 0], t)
    freqs = math.pi * torch.tensor([1.0, 2.0, 4.0])
    torch.testing.assert_close(f[:, 1:4], torch.sin(t[:, None] * freqs))
    torch.testing.assert_close(f[:, 4:], torch.cos(t[:, None] * freqs))
    assert fourier_time_features(t, 0).shape == (3, 1)


def test_mlp_velocity_time_forms_agree():
    torch.manual_seed(0)
    f = MLPVelocity(2)
    x = torch.randn(6, 2)
    ref = f(x, torch.full((6,), 0.4))
    assert ref.shape == x.shape
    for t in (0.4, torch.tensor(0.4), torch.full((6, 1), 0.4), torch.tensor([0.4])):
        torch.testing.assert_close(f(x, t), ref)
    assert not torch.allclose(f(x, 0.9), ref)
    # per-sample times are per-sample
    ts = torch.rand(6)
    batched = f(x, ts)
    rows = torch.cat([f(x[i : i + 1], ts[i]) for i in range(6)])
    torch.testing.assert_close(batched, rows)
    with pytest.raises(ValueError, match="needs t"):
        f(x)
    with pytest.raises(ValueError, match="t must be"):
        f(x, torch.rand(5))
    with pytest.raises(TypeError):
        f(x, "0.5")


def test_mlp_velocity_time_invariant_and_shapes():
    f = MLPVelocity(2, time_conditioned=False)
    x = torch.randn(4, 2)
    torch.testing.assert_close(f(x), f(x, 0.7))
    assert f.net[0].in_features == 2
    g = MLPVelocity(4, hidden_dims=(32,), n_time_frequencies=2)
    assert g.net[0].in_features == 4 + 5
    img = torch.randn(3, 1, 2, 2)
    assert g(img, 0.1).shape == img.shape
    d = MLPVelocity(2).double()
    assert d(torch.randn(2, 2, dtype=torch.float64), 0.3).dtype == torch.float64


def test_mlp_velocity_learns_constant_flow():
    """A few Adam steps regress f(x, t) onto u = x1 - x0 for the straight path (finite, decreasing)."""
    torch.manual_seed(0)
    f = MLPVelocity(2, hidden_dims=(32, 32))
    opt = torch.optim.Adam(f.parameters(), lr=1e-2)
    shift = torch.tensor([2.0, -1.0])
    losses = []
    for _ in range(150):
        x0 = torch.randn(128, 2)
        t = torch.rand(128)
        xt = x0 + t[:, None] * shift  # x1 = x0 + shift
        loss = (f(xt, t) - shift).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 1e-2 * losses[0]


def test_forward_is_the_sequential_call_and_hooks_fire():
    torch.manual_seed(0)
    energy, field = MLPEnergy(2), MLPVelocity(2)
    x, t = torch.randn(9, 2), torch.rand(9)
    # forward computes exactly what nn.Sequential computes
    torch.testing.assert_close(energy(x), energy.net(x).squeeze(-1), rtol=0, atol=0)
    ref = field(x, t)
    seen = []
    handle = field.net[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    torch.testing.assert_close(field(x, t), ref, rtol=0, atol=0)
    assert seen == [torch.Size([9, 64])]  # a layer hook fires
    handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: seen.append(type(m).__name__)
    )
    try:
        energy(x)
    finally:
        handle.remove()
    assert "Linear" in seen and "SiLU" in seen  # global hooks too
    grads = []
    energy.net[0].register_full_backward_hook(lambda m, gi, go: grads.append(go[0].shape))
    energy(x.requires_grad_(True)).sum().backward()
    assert grads == [torch.Size([9, 64])]


@pytest.mark.parametrize(
    "act",
    ["silu", "relu", "leaky_relu", "gelu", "elu", "selu", "softplus", "tanh", "sigmoid"],
)
@pytest.mark.parametrize("hidden", [(16,), (16, 8, 5)])
def test_explicit_gradient_equals_autograd(act, hidden):
    torch.manual_seed(0)
    m = MLPEnergy(3, hidden, act, dtype=torch.float64)
    x = torch.randn(11, 3, dtype=torch.float64)
    assert m._explicit_plan(x, None) is not None  # the explicit pass is taken
    g = m.gradient(x)
    ref = BaseModel.gradient(m, x)  # one autograd call
    torch.testing.assert_close(g, ref, rtol=1e-12, atol=1e-12)
    assert not g.requires_grad and g.dtype == x.dtype


def test_explicit_gradient_shapes_and_float32():
    torch.manual_seed(1)
    m = MLPEnergy(12)
    x = torch.randn(4, 3, 2, 2)  # 12 features per sample, any event shape
    g = m.gradient(x)
    assert g.shape == x.shape
    torch.testing.assert_close(g, BaseModel.gradient(m, x), rtol=1e-5, atol=1e-6)
    one = torch.randn(12)  # a 1-D input is one sample
    torch.testing.assert_close(m.gradient(one), m.gradient(one[None])[0])
    with pytest.raises(Exception, match="MLPEnergy expects"):
        m.gradient(torch.randn(4, 5))


def test_explicit_gradient_falls_back_where_it_does_not_apply():
    torch.manual_seed(2)
    x = torch.randn(6, 2)
    # an activation the explicit pass does not know, or one that works in place
    odd = MLPEnergy(2, (8,), nn.Hardswish)
    inplace = MLPEnergy(2, (8,), nn.ReLU(inplace=True))
    for m in (odd, inplace):
        assert m._explicit_plan(x, None) is None
        torch.testing.assert_close(m.gradient(x), BaseModel.gradient(m, x))
    m = MLPEnergy(2)
    assert m._explicit_plan(x.double(), None) is None  # dtype mismatch: autograd path
    assert m._explicit_plan(x.half(), None) is None
    # the public opt-out: the explicit pass does not call forward, so a hook runs only
    # when the model differentiates through its forward
    seen = []
    handle = m.net[2].register_forward_hook(lambda mod, i, o: seen.append(1))
    explicit = m.gradient(x)
    assert not seen  # the closed form reads the weights
    m.explicit_gradient = False
    assert m._explicit_plan(x, None) is None
    torch.testing.assert_close(m.gradient(x), explicit, rtol=1e-5, atol=1e-6)
    assert seen  # the hook ran
    handle.remove()
    m.explicit_gradient = True
    assert m._explicit_plan(x, None) is not None
    with pytest.raises(TypeError):  # MLPEnergy takes no conditioning, as before
        m.gradient(x, model_kwargs={"y": torch.zeros(6)})


def test_tensor_subclass_weights_take_the_module_call():
    """FSDP2 shards weights into DTensor (a tensor subclass): the explicit pass must not read
    them, the autograd path through the module call (where FSDP unshards) runs instead."""

    class Wrapped(torch.Tensor):
        pass

    torch.manual_seed(3)
    m = MLPEnergy(2, (8,), dtype=torch.float64)
    x = torch.randn(5, 2, dtype=torch.float64)
    explicit = m.gradient(x)
    m.net[0].weight = nn.Parameter(m.net[0].weight.detach().as_subclass(Wrapped))
    assert type(m.net[0].weight) is Wrapped
    assert m._explicit_plan(x, None) is None
    torch.testing.assert_close(m.gradient(x), explicit, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", ["silu", "tanh"])
def test_gradient_under_an_enclosing_autocast_keeps_the_dtype_of_x(act):
    """Inside ``torch.autocast`` the gradient is that of the autocast forward, in x's dtype
    (the explicit pass would run its linear maps in bfloat16 and return bfloat16)."""
    torch.manual_seed(0)
    m = MLPEnergy(2, (32, 32), act)
    x = torch.randn(16, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fn = m.gradient_function()
        xg = x.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(m(xg).sum(), xg)  # autograd of the autocast forward
        for g in (m.gradient(x), fn(x)):
            assert g.dtype == torch.float32
            torch.testing.assert_close(g, ref, rtol=0, atol=0)
    fn = m.gradient_function()  # resolved outside, called inside an autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fn(x).dtype == torch.float32
    torch.testing.assert_close(fn(x), BaseModel.gradient(m, x), rtol=1e-5, atol=1e-6)
