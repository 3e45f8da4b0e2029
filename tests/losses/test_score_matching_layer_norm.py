"""Score matching through an energy with `nn.LayerNorm`: the parameter gradient of a loss on
second derivatives in x is a third derivative, which PyTorch's fused layer_norm gets wrong
(pytorch/pytorch#175754: 17-90 % here). The losses reroute LayerNorm modules through
primitive ops; the gradient must match a central finite difference of the loss in float64."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from torchebm.core import BaseModel
from torchebm.losses import DenoisingScoreMatching, ScoreMatching, SlicedScoreMatching
from torchebm.losses._base_score_matching import layer_norms_from_primitives

F64 = torch.float64


class _NormedEnergy(BaseModel):
    def __init__(self, norm: nn.Module):
        super().__init__(dtype=F64)
        self.net = nn.Sequential(nn.Linear(3, 16), norm, nn.Tanh(), nn.Linear(16, 1)).to(F64)

    def forward(self, x):
        return self.net(x).squeeze(-1)


LOSSES = {
    "exact": (ScoreMatching, {"hessian_method": "exact"}),
    "hutchinson": (ScoreMatching, {"hessian_method": "hutchinson"}),
    "sliced": (SlicedScoreMatching, {}),
    "denoising": (DenoisingScoreMatching, {}),  # second order only: right before, too
}
NORMS = {
    "affine": lambda: nn.LayerNorm(16),
    "no bias": lambda: nn.LayerNorm(16, bias=False),
    "no affine": lambda: nn.LayerNorm(16, elementwise_affine=False),
}


def _directional_derivative(loss, x):
    """(autograd, central difference) of the loss along a random parameter direction."""
    names = [n for n, _ in loss.named_parameters()]
    point = [p.detach().clone() for _, p in loss.named_parameters()]
    direction = [
        torch.randn(p.shape, dtype=F64, generator=torch.Generator().manual_seed(i))
        for i, p in enumerate(point)
    ]

    def value(params):  # the same probes at every evaluation
        gen = torch.Generator().manual_seed(3)
        return functional_call(loss, dict(zip(names, params)), (x,), {"generator": gen})

    leaves = [p.clone().requires_grad_(True) for p in point]
    grads = torch.autograd.grad(value(leaves), leaves, allow_unused=True)
    exact = sum((g * v).sum() for g, v in zip(grads, direction) if g is not None).item()
    h = 1e-6
    plus = value([p + h * v for p, v in zip(point, direction)])
    minus = value([p - h * v for p, v in zip(point, direction)])
    return exact, ((plus - minus) / (2 * h)).item()


@pytest.mark.parametrize("norm", list(NORMS))
@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_parameter_gradient_through_layer_norm_matches_finite_differences(loss_name, norm):
    torch.manual_seed(0)
    cls, options = LOSSES[loss_name]
    loss = cls(_NormedEnergy(NORMS[norm]()), dtype=F64, **options)
    x = torch.randn(8, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    exact, numeric = _directional_derivative(loss, x)
    # the central difference is accurate to ~1e-9 relative here; the fused kernel's error
    # is 0.09-0.9 relative
    assert abs(exact - numeric) <= 1e-6 * abs(numeric)


def test_rerouted_layer_norm_gives_the_fused_values_and_restores_the_module():
    torch.manual_seed(0)
    layer = nn.LayerNorm(16).to(F64)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    model = nn.Sequential(nn.Linear(3, 16), layer).to(F64)
    x = torch.randn(5, 3, dtype=F64)
    fused = model(x)
    with layer_norms_from_primitives(model, None):
        inside = model(x)
    torch.testing.assert_close(inside, fused, rtol=1e-12, atol=1e-12)
    # outside the block the module is the plain fused LayerNorm again (no hook left)
    fused_again = model(x)
    assert fused_again.grad_fn.name() == fused.grad_fn.name() != inside.grad_fn.name()


@pytest.mark.parametrize("loss_name", ["exact", "sliced"])
def test_compute_loss_called_directly_gets_the_right_gradient(loss_name):
    torch.manual_seed(0)
    cls, options = LOSSES[loss_name]
    loss = cls(_NormedEnergy(nn.LayerNorm(16)), dtype=F64, **options)
    x = torch.randn(8, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    params = [p for _, p in loss.named_parameters()]
    direction = [
        torch.randn(p.shape, dtype=F64, generator=torch.Generator().manual_seed(i))
        for i, p in enumerate(params)
    ]

    def value():
        return loss.compute_loss(x, generator=torch.Generator().manual_seed(3))

    grads = torch.autograd.grad(value(), params, allow_unused=True)  # (E's offset: unused)
    exact = sum((g * v).sum() for g, v in zip(grads, direction) if g is not None).item()
    h, values = 1e-6, []
    for sign in (1, -2):  # to theta + h v, then theta - h v
        with torch.no_grad():
            for p, v in zip(params, direction):
                p.add_(sign * h * v)
        values.append(value().item())
    assert abs(exact - (values[0] - values[1]) / (2 * h)) <= 1e-6 * abs(exact)


class _ChannelsFirstLayerNorm(nn.LayerNorm):
    """A LayerNorm subclass with its own forward (normalises dim 1 of (B, C, L))."""

    def forward(self, x):
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def test_layer_norm_subclasses_with_their_own_forward_are_left_alone():
    norm = _ChannelsFirstLayerNorm(4).to(F64)
    model = nn.Sequential(nn.Unflatten(1, (4, 5)), norm, nn.Flatten()).to(F64)
    x = torch.randn(3, 20, dtype=F64)
    with layer_norms_from_primitives(model):
        inside = model(x)
    torch.testing.assert_close(inside, model(x), rtol=0.0, atol=0.0)


def test_approx_trace_is_second_order_and_keeps_the_fused_kernel():
    model = _NormedEnergy(nn.LayerNorm(16))
    assert ScoreMatching(model, hessian_method="exact").second_order_in_x
    assert not ScoreMatching(model, hessian_method="approx").second_order_in_x
    assert SlicedScoreMatching(model).second_order_in_x
    assert not DenoisingScoreMatching(model).second_order_in_x


def test_nested_blocks_and_keyword_calls_reroute_each_layer_norm_once(monkeypatch):
    from torchebm.losses import _base_score_matching as sm_base

    reroutes = []
    original = sm_base._layer_norm_from_primitives

    def counted(*args):
        reroutes.append(1)
        return original(*args)

    monkeypatch.setattr(sm_base, "_layer_norm_from_primitives", counted)
    layer = nn.LayerNorm(16).to(F64)
    seen = []
    layer.register_forward_hook(lambda m, a, out: seen.append(out.grad_fn.name()))
    x = torch.randn(5, 16, dtype=F64)
    with layer_norms_from_primitives(layer, layer), layer_norms_from_primitives(layer):
        out = layer(input=x)
    torch.testing.assert_close(out, nn.functional.layer_norm(x, (16,), layer.weight, layer.bias))
    # one reroute (the module named twice, the block nested), then the user's hook, which
    # sees the rerouted output (an add, not the fused kernel's node)
    assert len(reroutes) == 1
    assert len(seen) == 1 and "LayerNorm" not in seen[0]
    layer(x)  # outside the blocks: the fused kernel, no reroute
    assert len(reroutes) == 1 and "LayerNorm" in seen[-1]


def test_a_compiled_training_step_runs_the_rerouted_loss():
    torch.manual_seed(0)
    loss = ScoreMatching(_NormedEnergy(nn.LayerNorm(16)), dtype=F64)
    x = torch.randn(8, 3, dtype=F64)
    params = [p for p in loss.parameters()]

    def step(batch):
        return torch.autograd.grad(loss(batch), params, allow_unused=True)

    eager = step(x)
    compiled = torch.compile(step, backend="eager")(x)
    for a, b in zip(eager, compiled):
        if a is not None:
            torch.testing.assert_close(a, b)


def _rerouted(layer, x):
    """Whether ``layer(x)`` ran the primitive ops (its output's node is not the kernel's)."""
    return "LayerNorm" not in layer(x).grad_fn.name()


def test_blocks_closed_in_any_order_or_entered_twice_leave_no_reroute_behind():
    layer = nn.LayerNorm(8).to(F64)
    x = torch.randn(3, 8, dtype=F64)
    first, second = layer_norms_from_primitives(layer), layer_norms_from_primitives(layer)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # closed out of order (two threads, two tasks)
    assert _rerouted(layer, x)  # the second block still holds it
    second.__exit__(None, None, None)
    assert not _rerouted(layer, x)
    block = layer_norms_from_primitives(layer)
    with block:
        with block:  # one object entered twice
            assert _rerouted(layer, x)
        assert _rerouted(layer, x)
    assert not _rerouted(layer, x)


def test_the_hook_called_without_its_keywords_keeps_the_fused_output():
    """torch calls a hook removed by another thread mid-call without its kwargs: with the
    input passed by keyword it is then out of reach, and the fused output stands."""
    from torchebm.losses._base_score_matching import _layer_norm_from_primitives

    layer = nn.LayerNorm(8).to(F64)
    out = layer(torch.randn(3, 8, dtype=F64))
    assert _layer_norm_from_primitives(layer, (), out) is None


@pytest.mark.skipif(
    not hasattr(torch.compiler, "set_stance"), reason="fail_on_recompile needs torch >= 2.6"
)
def test_a_reroute_block_inside_a_compiled_step_matches_eager():
    # a user's own second-order objective in the public block, traced by dynamo (the loss's
    # objective runs eagerly, so only this reaches the block's compiled-caller path)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 1))
    twin = copy.deepcopy(net)

    def step(model, x):
        model.zero_grad(set_to_none=True)
        with layer_norms_from_primitives(model):
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
            trace = sum(
                torch.autograd.grad(g[:, d].sum(), x, create_graph=True)[0][:, d] for d in range(2)
            )
            value = (0.5 * g.square().sum(1) + trace).mean()
        value.backward()
        return value.detach()

    compiled = torch.compile(step, backend="eager")
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    for i in range(4):
        if i < 2:
            got = compiled(twin, x)
        else:
            with torch.compiler.set_stance("fail_on_recompile"):
                got = compiled(twin, x)
        torch.testing.assert_close(got, step(net, x))
        for p, q in zip(twin.parameters(), net.parameters()):
            torch.testing.assert_close(p.grad, q.grad)
