"""Score matching of a ``torch.compile``'d model: a compiled wrapper is refused, not given a
Hessian term of 0 (a module compiled in place leaves no public mark: documented, not refused).

torch's AOTAutograd backward (``torch.compile``'s default Inductor and ``"aot_eager"``
backends) cannot be differentiated again. With no parameter requiring grad (an EMA copy,
a frozen or parameter-free model) torch returns no second derivative instead of raising,
and the exact/Hutchinson trace and the sliced objective used to take it as 0.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.core import GaussianModel
from torchebm.core.errors import ConfigurationError
from torchebm.losses import ScoreMatching, SlicedScoreMatching

MEAN = torch.tensor([0.5, -0.2], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)


def _gaussian() -> GaussianModel:
    return GaussianModel(MEAN, COV, dtype=torch.float64)


def _closed_form(x: torch.Tensor) -> float:
    """Hyvarinen's objective of E = (x - m)^T P (x - m) / 2: mean(|P (x - m)|^2 / 2 - tr P)."""
    p = torch.linalg.inv(COV)
    g = (x - MEAN) @ p
    return float((0.5 * g.square().sum(1) - torch.trace(p)).mean())


@pytest.fixture(autouse=True)
def _fresh_compile_cache():
    torch.compiler.reset()  # a graph recompiled with dynamic shapes fails otherwise (torch's error)
    yield
    torch.compiler.reset()


X = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: ScoreMatching(m, hessian_method="exact", dtype=torch.float64),
        lambda m: ScoreMatching(
            m, hessian_method="hutchinson", hutchinson_samples=2, dtype=torch.float64
        ),
        lambda m: SlicedScoreMatching(m, n_projections=2, dtype=torch.float64),
    ],
    ids=["exact", "hutchinson", "sliced"],
)
def test_aot_compiled_model_is_refused_not_hessian_zero(make):
    # the trace term (-tr P = -3.53 for the exact form) was silently dropped: the loss came
    # out as mean |P(x - m)|^2 / 2 alone; now a ConfigurationError naming the fix
    loss = make(torch.compile(_gaussian(), backend="aot_eager"))
    with pytest.raises(ConfigurationError, match=r"torch\.compile'd.*backend='eager'"):
        loss(X, generator=torch.Generator().manual_seed(1))


def test_eager_compiled_model_keeps_the_closed_form():
    assert ScoreMatching(_gaussian(), dtype=torch.float64)(X).item() == pytest.approx(
        _closed_form(X), rel=1e-9
    )
    # backend="eager" keeps autograd's graph: the exact objective, no error
    loss = ScoreMatching(torch.compile(_gaussian(), backend="eager"), dtype=torch.float64)
    assert loss(X).item() == pytest.approx(_closed_form(X), rel=1e-9)


class _Act(nn.Module):
    """Piecewise-linear activations whose autograd graph leaves no path back to the input
    (``clamp``, ``where``, a mask): the Hessian is 0 almost everywhere, not an error."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, h):
        if self.kind == "clamp":
            return h.clamp(min=0)
        if self.kind == "where":
            return torch.where(h > 0, h, 0.01 * h)
        return h * (h > 0)


@pytest.mark.parametrize("kind", ["clamp", "where", "mask"])
@pytest.mark.parametrize("use_autograd", [True, False])
def test_piecewise_linear_energies_keep_the_zero_hessian(kind, use_autograd):
    # a review fix raised a ConfigurationError for these (their gradient varies across the
    # batch while autograd finds no second derivative); the trace is 0 almost everywhere, so
    # the objective is mean 0.5 |grad E|^2, computed here by hand
    torch.manual_seed(0)
    energy = _Energy(nn.Sequential(nn.Linear(2, 16), _Act(kind), nn.Linear(16, 1)))
    x = X.float()
    got = ScoreMatching(energy, hessian_method="exact", use_autograd=use_autograd)(x)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(energy(xg).sum(), xg)
    torch.testing.assert_close(got, 0.5 * g.square().sum(1).mean(), rtol=1e-6, atol=1e-7)


def test_a_linear_energy_keeps_its_zero_hessian():
    # the same missing second derivative is right when the gradient is constant in x
    energy = _Energy(nn.Linear(2, 1)).requires_grad_(False)
    x = X.float()
    loss = ScoreMatching(energy, hessian_method="exact")(x)
    w = energy.net.weight.detach()
    torch.testing.assert_close(loss, 0.5 * w.square().sum())


class _Energy(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).squeeze(-1)
