"""LabelClassifierFreeGuidance, EqMEnergy and InteractionModel against closed forms."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from torchebm.core import BaseModel, HarmonicModel, LinearScheduler
from torchebm.core.errors import ShapeError
from torchebm.models import (
    ConditionalTransformer2D,
    EqMEnergy,
    InteractionModel,
    LabelClassifierFreeGuidance,
    MLPEnergy,
    MLPVelocity,
)

F64 = torch.float64


# ---------------------------------------------------------------------------- CFG
class ToyLabelField(nn.Module):
    """out[:, c] = x[:, c] * (c + 1) + t + 10 * y; records the batches it sees."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, *, y, scale=1.0):
        self.calls.append(x.shape[0])
        ch = torch.arange(1, x.shape[1] + 1, dtype=x.dtype).view(1, -1, 1, 1)
        shape = (-1, 1, 1, 1)
        return scale * (
            x * ch
            + torch.as_tensor(t, dtype=x.dtype).reshape(-1).view(shape)
            + 10.0 * y.to(x.dtype).view(shape)
        )


def test_cfg_arithmetic_on_guided_channels_only():
    base = ToyLabelField()
    cfg = LabelClassifierFreeGuidance(base, null_label_id=9, cfg_scale=3.0, guide_channels=2)
    x = torch.randn(4, 3, 2, 2, dtype=F64)
    t = torch.rand(4, dtype=F64)
    y = torch.tensor([0, 1, 2, 3])
    out = cfg(x, t, y=y)
    cond = ToyLabelField()(x, t, y=y)
    uncond = ToyLabelField()(x, t, y=torch.full_like(y, 9))
    expected = torch.cat([uncond[:, :2] + 3.0 * (cond[:, :2] - uncond[:, :2]), uncond[:, 2:]], 1)
    torch.testing.assert_close(out, expected)
    assert base.calls == [8]  # one call on the doubled batch
    # closed form: guided channels get 10 * (null + s (y - null))
    torch.testing.assert_close(
        out[:, 0] - (x[:, 0] + t.view(-1, 1, 1)),
        (10.0 * (9 + 3.0 * (y - 9))).to(F64).view(-1, 1, 1).expand(4, 2, 2),
    )
    # kwargs whose leading dim is the batch are doubled; others pass through
    scale = torch.full((4, 1, 1, 1), 2.0, dtype=F64)
    torch.testing.assert_close(cfg(x, t, y=y, scale=scale), 2.0 * out)
    torch.testing.assert_close(cfg(x, 0.5, y=y, scale=2.0), 2.0 * cfg(x, 0.5, y=y))
    # guide_channels=None guides every channel
    all_ch = LabelClassifierFreeGuidance(
        ToyLabelField(), null_label_id=9, cfg_scale=3.0, guide_channels=None
    )
    torch.testing.assert_close(all_ch(x, t, y=y), uncond + 3.0 * (cond - uncond))


def test_cfg_scale_at_most_one_is_the_base():
    base = ToyLabelField()
    x, t, y = torch.randn(2, 3, 2, 2), torch.rand(2), torch.tensor([1, 2])
    for s in (1.0, 0.5):
        cfg = LabelClassifierFreeGuidance(base, null_label_id=9, cfg_scale=s)
        torch.testing.assert_close(cfg(x, t, y=y), base(x, t, y=y))
    # a base returning (field, extras) gives its field, guided or not
    pair = lambda x, t, *, y: (base(x, t, y=y), None)  # noqa: E731
    for s in (1.0, 3.0):
        out = LabelClassifierFreeGuidance(pair, null_label_id=9, cfg_scale=s)(x, t, y=y)
        want = LabelClassifierFreeGuidance(base, null_label_id=9, cfg_scale=s)(x, t, y=y)
        torch.testing.assert_close(out, want)
    with pytest.raises(TypeError):
        LabelClassifierFreeGuidance(base, null_label_id=9, cfg_scale="3")
    with pytest.raises(ValueError):
        LabelClassifierFreeGuidance(base, null_label_id=-1)


class _InnerTypeError(nn.Module):
    """Takes ``y`` through ``**kwargs`` and raises its own ``TypeError``."""

    def forward(self, x, t, **kwargs):
        raise TypeError("inner failure")


@pytest.mark.parametrize("kind", ["general", "label"])
def test_guidance_around_a_model_without_y_names_its_signature(kind):
    """A guided call passes ``y=``: a model whose forward takes no ``y`` gets a TypeError that
    names the wrapper and the model's signature, not Python's bare "unexpected keyword"."""
    from torchebm.models import ClassifierFreeGuidance

    def wrap(model):
        if kind == "general":
            return ClassifierFreeGuidance(model, guidance_scale=3.0, null_condition=9)
        return LabelClassifierFreeGuidance(model, null_label_id=9, cfg_scale=3.0)

    x, t, y = torch.randn(4, 2), torch.rand(4), torch.tensor([0, 1, 2, 3])
    owner = "ClassifierFreeGuidance" if kind == "general" else "LabelClassifierFreeGuidance"
    with pytest.raises(
        TypeError,
        match=rf"^{owner} calls model\(x, t, y=\.\.\.\) but "
        r"MLPVelocity\.forward\(x.*takes no y",
    ) as info:
        wrap(MLPVelocity(2))(x, t, y=y)
    assert "unexpected keyword argument 'y'" in str(info.value.__cause__)
    # a model that takes y (or **kwargs) keeps its own TypeError, unchanged
    with pytest.raises(TypeError, match="^inner failure$"):
        wrap(_InnerTypeError())(x, t, y=y)
    if kind == "general":  # without y the model is called unguided: no y, no error
        field = MLPVelocity(2)
        torch.testing.assert_close(wrap(field)(x, t), field(x, t))


def test_cfg_with_transformer():
    torch.manual_seed(0)
    net = ConditionalTransformer2D(
        in_channels=1,
        out_channels=2,
        input_size=4,
        patch_size=2,
        embed_dim=16,
        depth=1,
        num_heads=2,
        num_classes=3,
        class_dropout_prob=0.1,
    ).eval()
    with torch.no_grad():
        net.final_layer.linear.weight.normal_(std=0.1)
    cfg = LabelClassifierFreeGuidance(
        net, null_label_id=net.null_label_id, cfg_scale=2.5, guide_channels=1
    )
    x, t, y = torch.randn(3, 1, 4, 4), torch.rand(3), torch.tensor([0, 2, 1])
    cond, uncond = net(x, t, y=y), net(x, t, y=torch.full_like(y, 3))
    out = cfg(x, t, y=y)
    torch.testing.assert_close(
        out[:, :1], uncond[:, :1] + 2.5 * (cond[:, :1] - uncond[:, :1]), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(out[:, 1:], uncond[:, 1:], atol=1e-6, rtol=1e-5)


def test_cfg_warns_when_the_base_drops_labels_in_training_mode():
    def net(dropout):
        return ConditionalTransformer2D(
            in_channels=1, out_channels=1, input_size=4, patch_size=2, embed_dim=16,
            depth=1, num_heads=2, num_classes=3, class_dropout_prob=dropout,
        )  # fmt: skip

    x, t, y = torch.randn(3, 1, 4, 4), torch.rand(3), torch.tensor([0, 2, 1])
    for scale in (1.0, 2.5):
        dropping = LabelClassifierFreeGuidance(net(0.5), null_label_id=3, cfg_scale=scale)
        with pytest.warns(RuntimeWarning, match="training mode and drops labels.*eval"):
            dropping(x, t, y=y)
        dropping.eval()  # the wrapper's eval() reaches the base
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dropping(x, t, y=y)
    no_dropout = LabelClassifierFreeGuidance(net(0.0), null_label_id=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # training mode without label dropout is deterministic
        no_dropout(x, t, y=y)


# ---------------------------------------------------------------------------- EqMEnergy
class LinearField(nn.Module):
    """f(x, t) = x A^T (+ records t); optionally returns (f, activations)."""

    def __init__(self, a, as_tuple=False):
        super().__init__()
        self.a = nn.Parameter(a)
        self.as_tuple = as_tuple
        self.last_t = None

    def forward(self, x, t, shift=0.0):
        self.last_t = t
        f = x @ self.a.T + shift
        return (f, [x]) if self.as_tuple else f


@pytest.mark.parametrize("as_tuple", [False, True])
def test_eqm_energy_closed_forms(as_tuple):
    torch.manual_seed(0)
    a = torch.randn(3, 3, dtype=F64)
    field = LinearField(a, as_tuple=as_tuple)
    x = torch.randn(5, 3, dtype=F64)
    dot = EqMEnergy(field, "dot")
    torch.testing.assert_close(dot(x), ((x @ a.T) * x).sum(1))  # E = x^T A x
    torch.testing.assert_close(dot.gradient(x), x @ (a + a.T).T)
    assert torch.equal(field.last_t, torch.zeros(5, dtype=F64))  # evaluated at t = 0
    mean = EqMEnergy(field, "mean")
    torch.testing.assert_close(mean.gradient(x), dot.gradient(x))
    l2 = EqMEnergy(field, "l2")
    torch.testing.assert_close(l2(x), -0.5 * (x @ a.T).pow(2).sum(1))
    torch.testing.assert_close(l2.gradient(x), -(x @ a.T) @ a)  # -A^T A x
    imp = EqMEnergy(field, "implicit")
    torch.testing.assert_close(imp.gradient(x), x @ a.T)
    assert not imp.gradient(x).requires_grad
    # conditioning reaches the field
    torch.testing.assert_close(imp.gradient(x, model_kwargs={"shift": 1.0}), x @ a.T + 1.0)


@pytest.mark.parametrize("energy_type", ["implicit", "dot", "l2"])
def test_eqm_energy_gradient_of_one_sample(energy_type):
    """A 1-D x is one sample for every energy type (BaseModel.gradient's contract)."""
    torch.manual_seed(0)
    a = torch.randn(3, 3, dtype=F64)
    x = torch.randn(3, dtype=F64)
    expected = {  # closed forms of the linear field f(x) = A x
        "implicit": a @ x,
        "dot": (a + a.T) @ x,
        "l2": -a.T @ (a @ x),
    }[energy_type]
    field = LinearField(a)
    field.forward = lambda x, t: torch.mm(x, field.a.T)  # a batched field: (B, d) only
    g = EqMEnergy(field, energy_type).gradient(x)
    assert g.shape == (3,) and g.dtype == F64
    torch.testing.assert_close(g, expected)
    with pytest.raises(ShapeError, match="scalar"):
        EqMEnergy(LinearField(a), energy_type).gradient(torch.tensor(1.0, dtype=F64))


def test_eqm_energy_from_loss_and_errors():
    field = MLPVelocity(2)
    e = EqMEnergy.from_loss(SimpleNamespace(model=field, energy_type="none"))
    assert e.energy_type == "implicit" and e.field is field
    assert EqMEnergy.from_loss(SimpleNamespace(model=field, energy_type="l2")).energy_type == "l2"
    with pytest.raises(TypeError, match="energy_type"):
        EqMEnergy.from_loss(SimpleNamespace(model=field))
    with pytest.raises(ValueError, match="energy_type"):
        EqMEnergy(field, "banana")
    # the loss's name of the implicit field is taken too (it was refused, without a hint)
    assert EqMEnergy(field, "none").energy_type == "implicit"
    assert isinstance(e, BaseModel)
    x = torch.randn(4, 2)
    assert e.gradient(x).shape == (4, 2)
    assert EqMEnergy(field, "dot").gradient(x).shape == (4, 2)


def test_eqm_energy_gradient_descent_reaches_field_zero():
    """Implicit EqM gradient descent x <- x - eta f(x) converges to the zero of a linear field."""
    field = LinearField(torch.eye(2, dtype=F64))  # f(x) = x: equilibrium at the origin
    energy = EqMEnergy(field, "implicit")
    x = torch.randn(6, 2, dtype=F64)
    for _ in range(60):
        x = x - 0.1 * energy.gradient(x)
    assert x.abs().max() < 0.9**60 * 10


# ---------------------------------------------------------------------------- Interaction
def brute_interaction(v, x, s, sigma):
    d2 = torch.cdist(x, x).pow(2)
    return v(x) - 0.5 * s / sigma**2 * d2.sum(1)


def test_interaction_energy_and_gradient_closed_form():
    torch.manual_seed(0)
    x = torch.randn(7, 3, dtype=F64)
    s, sigma = 0.3, 0.7
    harmonic = HarmonicModel(k=2.0, dtype=F64)
    m = InteractionModel(harmonic, sigma_w=sigma, strength=s)
    torch.testing.assert_close(m(x), brute_interaction(harmonic, x, s, sigma))
    expected = 2.0 * x - 2 * s * 7 / sigma**2 * (x - x.mean(0))
    torch.testing.assert_close(m.gradient(x), expected)  # closed form (BaseModel inner)
    # autograd of the summed batch energy agrees
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(m(xg).sum(), xg)
    torch.testing.assert_close(g, expected)


def test_interaction_with_callable_and_neural_inner():
    torch.manual_seed(0)
    x = torch.randn(5, 2)
    mlp = MLPEnergy(2)
    m = InteractionModel(mlp, sigma_w=1.0, strength=0.5)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(m(xg).sum(), xg)
    torch.testing.assert_close(m.gradient(x), g, atol=1e-5, rtol=1e-4)

    def v(z):
        return (z**2).sum(1)

    m2 = InteractionModel(v, sigma_w=2.0, strength=1.0)
    xg = x.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(m2(xg).sum(), xg)
    torch.testing.assert_close(m2.gradient(x), g2)


def test_interaction_strength_schedulable_and_validation():
    m = InteractionModel(HarmonicModel(), sigma_w=1.0, strength=LinearScheduler(0.0, 1.0, 4))
    x = torch.randn(4, 2)
    torch.testing.assert_close(m.gradient(x), x)  # strength 0 at step 0
    m.step_schedulers()
    m.step_schedulers()
    assert m.strength == pytest.approx(0.5)
    torch.testing.assert_close(m.gradient(x), x - 2 * 0.5 * 4 * (x - x.mean(0)))
    state = m.state_dict()
    m2 = InteractionModel(HarmonicModel(), sigma_w=1.0, strength=LinearScheduler(0.0, 1.0, 4))
    m2.load_state_dict(state)
    assert m2.strength == pytest.approx(0.5)
    m.strength = 0.2
    assert m.strength == pytest.approx(0.2)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="sigma_w"):
            InteractionModel(HarmonicModel(), sigma_w=bad)
    with pytest.raises(TypeError):
        InteractionModel(HarmonicModel(), sigma_w=1.0, strength="big")


def test_dit_and_time_mlp_take_one_time_as_a_python_number():
    # before: TypeError "t must be a torch.Tensor, got float" (ConditionalTransformer2D and
    # MLPVelocity took numbers; FlowSampler-style callers pass one)
    from torchebm.models import DiT, TimeConditionedMLP

    y = torch.tensor([0, 2])
    dit = DiT(input_size=4, in_channels=1, patch_size=2, embed_dim=16, depth=1, num_heads=2,
              num_classes=3)  # fmt: skip
    mlp = TimeConditionedMLP(in_dim=2, hidden_dim=16, num_classes=3)
    for net, x in ((dit, torch.randn(2, 1, 4, 4)), (mlp, torch.randn(2, 2))):
        with torch.no_grad():
            for p in net.parameters():  # AdaLN-Zero starts at zero: make the time matter
                p.add_(0.1 * torch.randn_like(p))
        torch.testing.assert_close(net(x, 0.3, y=y), net(x, torch.full((2,), 0.3), y=y))
        assert not torch.allclose(net(x, 0.3, y=y), net(x, 0.7, y=y))
