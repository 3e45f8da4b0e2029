r"""`MLPEnergy` and `MLPVelocity` against hand-written forwards.

The references multiply the layers' weights out here (``x W^T + b``) with the activation's
functional form and its own parameters, and differentiate that by autograd; the time
features of `MLPVelocity` are written from its docstring, $[t, \sin(2^k\pi t),
\cos(2^k\pi t)]_{k<K}$, in that order.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchebm.models import MLPEnergy, MLPVelocity

F64 = torch.float64

# activation instances with parameters away from their defaults, and their functional form
ACTIVATIONS = {
    "softplus": (nn.Softplus(beta=2.0, threshold=5.0), lambda h: F.softplus(h, 2.0, 5.0)),
    "gelu_tanh": (nn.GELU(approximate="tanh"), lambda h: F.gelu(h, approximate="tanh")),
    "leaky_relu": (nn.LeakyReLU(0.2), lambda h: F.leaky_relu(h, 0.2)),
    "elu": (nn.ELU(alpha=0.5), lambda h: F.elu(h, 0.5)),
}


def hand_forward(net: nn.Sequential, x: torch.Tensor, act) -> torch.Tensor:
    layers = [m for m in net if isinstance(m, nn.Linear)]
    for lin in layers[:-1]:
        x = act(x @ lin.weight.T + lin.bias)
    return x @ layers[-1].weight.T + layers[-1].bias


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_explicit_gradient_with_activation_parameters_matches_the_hand_written_energy(name):
    module, act = ACTIVATIONS[name]
    torch.manual_seed(0)
    model = MLPEnergy(3, (16, 8), module, dtype=F64)
    x = 2.0 * torch.randn(32, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    xg = x.clone().requires_grad_(True)
    energy = hand_forward(model.net, xg, act).squeeze(-1)
    torch.testing.assert_close(model(x), energy.detach(), rtol=1e-12, atol=1e-12)
    (want,) = torch.autograd.grad(energy.sum(), xg)
    assert model._explicit_plan(x, None) is not None  # the explicit pass is what runs
    torch.testing.assert_close(model.gradient(x), want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.gradient_function()(x), want, rtol=1e-10, atol=1e-10)


def test_velocity_input_is_x_then_t_then_sines_then_cosines():
    k = 3
    torch.manual_seed(2)
    field = MLPVelocity(2, (16,), n_time_frequencies=k, dtype=F64)
    x = torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    t = torch.linspace(0.0, 1.0, 6, dtype=F64)
    a = torch.stack([2.0**j * math.pi * t for j in range(k)], 1)
    feats = torch.cat([x, t[:, None], torch.sin(a), torch.cos(a)], 1)
    want = hand_forward(field.net, feats, F.silu)
    torch.testing.assert_close(field(x, t), want, rtol=1e-12, atol=1e-12)
