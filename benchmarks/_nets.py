"""Hand-written networks and helpers of the floors (plain tensors and ``torch.nn.functional``).

The library side uses ``torchebm.models.MLPEnergy`` / ``MLPVelocity``; the floors run the
same weights through these functions, so both sides do exactly the same maths.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "HandMLP",
    "HandVelocity",
    "agree",
    "make_generator",
    "mixture_data",
]


def _linear_layers(net: nn.Module) -> list[nn.Linear]:
    layers = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise TypeError(f"{type(net).__name__} holds no nn.Linear layers")
    return layers


class HandMLP:
    """``Linear -> SiLU -> ... -> Linear`` on copies of a module's weights; energy ``(B,)``.

    ``params`` require grad so that training floors can step them with an optimizer.
    """

    def __init__(self, net: nn.Module, *, requires_grad: bool = True, dtype=None):
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        for lin in _linear_layers(net):
            w = lin.weight.detach().clone().to(dtype or lin.weight.dtype)
            b = lin.bias.detach().clone().to(dtype or lin.bias.dtype)
            self.layers.append((w.requires_grad_(requires_grad), b.requires_grad_(requires_grad)))

    @property
    def params(self) -> list[torch.Tensor]:
        return [p for wb in self.layers for p in wb]

    def features(self, h: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.layers
        for w, b in hidden:
            h = F.silu(F.linear(h, w, b))
        w, b = last
        return F.linear(h, w, b)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).squeeze(-1)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """``dE/dx`` ``(B, D)`` by an explicit backward pass (no autograd graph).

        Forward keeping each hidden pre-activation ``h_l``, then from the top
        ``g <- silu'(h_l) * g @ W_l``: one fused ``silu_backward`` and one ``mm`` per hidden
        layer, the best a hand-written loop can do for this network. The last hidden SiLU
        is never evaluated: the gradient needs only its pre-activation.
        """
        if torch.is_grad_enabled():  # the floors' loops already run without autograd
            with torch.no_grad():
                return self.grad(x)
        *hidden, (w_out, _) = self.layers
        pres, h = [], x
        for i, (w, b) in enumerate(hidden):
            pres.append(F.linear(h, w, b))
            if i < len(hidden) - 1:
                h = F.silu(pres[-1])
        g = w_out.expand(x.shape[0], -1)
        for (w, _), pre in zip(reversed(hidden), reversed(pres)):
            g = torch.ops.aten.silu_backward(g, pre).mm(w)
        return g

    def autograd_grad(self, x: torch.Tensor) -> torch.Tensor:
        """``dE/dx`` by one autograd call (the extra ``autograd floor`` column)."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self(xg).sum(), xg)
        return g


class HandVelocity(HandMLP):
    """Time-conditioned field ``f(x, t)``: ``MLP([x, t, sin(2^k pi t), cos(2^k pi t)])``."""

    def __init__(self, net: nn.Module, n_time_frequencies: int = 4, **kw):
        super().__init__(net, **kw)
        w0 = self.layers[0][0]
        self.freqs = math.pi * 2.0 ** torch.arange(
            n_time_frequencies, dtype=w0.dtype, device=w0.device
        )

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        tc = t.reshape(-1, 1)
        a = tc * self.freqs
        return self.features(torch.cat([x, tc, torch.sin(a), torch.cos(a)], dim=1))


def make_generator(device: torch.device, seed: int = 0) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def mixture_data(n: int, device: torch.device, seed: int = 1) -> torch.Tensor:
    """``n`` 2-D points from eight Gaussians on a circle of radius 2 (the usual toy data)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, 8, (n,), generator=g)
    ang = k.to(torch.float32) * (2 * math.pi / 8)
    centres = torch.stack([torch.cos(ang), torch.sin(ang)], dim=1) * 2.0
    return (centres + 0.1 * torch.randn(n, 2, generator=g)).to(device)


def agree(a, b, *, atol: float, rtol: float = 0.0, what: str = "") -> str:
    """Compare two tensors (or scalars); return ``"max|d|=..."`` or raise ``AssertionError``."""
    a = torch.as_tensor(a).detach().to("cpu", torch.float64)
    b = torch.as_tensor(b).detach().to("cpu", torch.float64)
    if a.shape != b.shape:
        raise AssertionError(f"{what} shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    d = (a - b).abs()
    worst = float(d.max()) if d.numel() else 0.0
    bound = atol + rtol * b.abs()
    if not bool((d <= bound).all()):
        raise AssertionError(f"{what} library and floor disagree: max|d|={worst:.3g}")
    return f"{what}max|d|={worst:.1e}"
