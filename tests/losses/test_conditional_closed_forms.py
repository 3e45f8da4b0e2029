"""Conditional losses (``model_kwargs={"y": ...}``) against hand-written per-class formulas.

For $E(x \\mid y) = \\lVert x - \\mu_y\\rVert^2 / (2 s_y^2)$ in $D$ dimensions,
$\\nabla E = (x - \\mu_y)/s_y^2$ and $\\operatorname{tr}\\nabla^2 E = D / s_y^2$, so score
matching (exact trace, and sliced with Rademacher probes and variance reduction, whose
$v^\\top \\nabla^2 E\\, v = \\lVert v\\rVert^2 / s_y^2 = D / s_y^2$) has a closed form per
sample; denoising score matching and flow matching are checked with the model's recorded
inputs. Agreement is to rounding in float64.
"""

from __future__ import annotations

import math

import torch
from _support.losses import TinyLangevin
from torch import nn

from torchebm.core import BaseModel, ExponentialDecayScheduler
from torchebm.losses import (
    ContrastiveDivergence,
    DenoisingScoreMatching,
    FlowMatchingLoss,
    ScoreMatching,
    SlicedScoreMatching,
)

F64 = torch.float64
K, D, B = 5, 3, 64


class ClassGaussian(BaseModel):
    """Learnable per-class centre and log-variance; records the inputs it sees."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.mus = nn.Parameter(torch.randn(K, D, dtype=F64, generator=g))
        self.log_s2 = nn.Parameter(0.3 * torch.randn(K, dtype=F64, generator=g))
        self.seen: list[torch.Tensor] = []

    def forward(self, x, y):
        self.seen.append(x.detach().clone())
        return self.energy(x, y)

    def energy(self, x, y):
        return (x - self.mus[y]).square().sum(-1) / (2 * self.log_s2[y].exp())


class ClassVelocity(nn.Module):
    """$v(x, t \\mid y) = a_y \\odot x + b_y t$; records ``(x, t, y)``."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.a = nn.Parameter(torch.randn(K, D, dtype=F64, generator=g))
        self.b = nn.Parameter(torch.randn(K, D, dtype=F64, generator=g))
        self.seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, x, t, y):
        self.seen.append((x.detach().clone(), t.detach().clone(), y.clone()))
        return self.a[y] * x + self.b[y] * t[:, None]


def _batch():
    g = torch.Generator().manual_seed(5)
    return torch.randn(B, D, dtype=F64, generator=g), torch.randint(0, K, (B,), generator=g)


def _score_matching_by_hand(model, x, y):
    s2 = model.log_s2[y].exp()
    grad = (x - model.mus[y]) / s2[:, None]
    return (0.5 * grad.square().sum(-1) - D / s2).mean()


def test_score_matching_losses_equal_the_per_class_formula():
    x, y = _batch()
    model = ClassGaussian()
    with torch.no_grad():
        expected = _score_matching_by_hand(model, x, y)
        shifted = _score_matching_by_hand(model, x, (y + 1) % K)  # labels shifted by one
    exact = ScoreMatching(model, dtype=F64)(x, model_kwargs={"y": y})
    sliced = SlicedScoreMatching(model, n_projections=3, variance_reduction=True, dtype=F64)
    vr = sliced(x, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(exact, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(vr, expected, rtol=0, atol=1e-12)
    # the formula tells the classes apart: shifted labels give another value
    assert abs((expected - shifted).item()) > 0.1


def test_denoising_score_matching_with_a_scheduled_sigma_equals_the_formula():
    x, y = _batch()
    model = ClassGaussian()
    dsm = DenoisingScoreMatching(model, noise_scale=ExponentialDecayScheduler(0.5, 0.8), dtype=F64)
    for _ in range(5):
        dsm.step_schedulers()
    sigma = 0.5 * 0.8**5
    loss = dsm(x, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(2))
    noisy = next(s for s in reversed(model.seen) if s.shape == x.shape)  # not the probe
    noise = noisy - x
    assert abs(float(noise.std()) / sigma - 1) < 5 / math.sqrt(2 * noise.numel())
    s2 = model.log_s2[y].exp()
    target = noise / sigma**2
    expected = 0.5 * ((noisy - model.mus[y]) / s2[:, None] - target).square().sum(-1).mean()
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)


def test_contrastive_divergence_equals_the_formula_on_its_negatives():
    x, y = _batch()
    model = ClassGaussian()
    cd = ContrastiveDivergence(
        model, TinyLangevin(model, n_steps=3), k_steps=3, energy_reg_weight=0.01, dtype=F64
    )
    loss, negatives = cd(x, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(3))
    e_pos, e_neg = model.energy(x, y), model.energy(negatives, y)
    expected = e_pos.mean() - e_neg.mean() + 0.01 * (e_pos.square().mean() + e_neg.square().mean())
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)


def test_flow_matching_equals_the_formula_and_drops_labels_as_documented():
    x1, y = _batch()
    x0 = torch.randn(B, D, dtype=F64, generator=torch.Generator().manual_seed(4))
    field = ClassVelocity()
    loss = FlowMatchingLoss(field, dtype=F64)(
        x1, model_kwargs={"y": y}, x0=x0, generator=torch.Generator().manual_seed(5)
    )
    xt, t, seen_y = field.seen[-1]
    assert torch.equal(seen_y, y)
    torch.testing.assert_close(xt, (1 - t)[:, None] * x0 + t[:, None] * x1, rtol=0, atol=1e-15)
    pred = field.a[y] * xt + field.b[y] * t[:, None]
    torch.testing.assert_close(loss, (pred - (x1 - x0)).square().mean(), rtol=0, atol=1e-12)

    # cfg_dropout: a binomial fraction of labels becomes exactly null_condition while
    # training, the others stay the caller's; evaluation drops none
    n, p, null = 20_000, 0.2, K - 1
    labels = torch.randint(0, K - 1, (n,), generator=torch.Generator().manual_seed(6))
    data = torch.randn(n, D, dtype=F64, generator=torch.Generator().manual_seed(7))
    fm = FlowMatchingLoss(field, dtype=F64, cfg_dropout=p, null_condition=null)
    fm(data, model_kwargs={"y": labels}, generator=torch.Generator().manual_seed(8))
    seen_y = field.seen[-1][2]
    dropped = seen_y == null
    assert abs(float(dropped.double().mean()) - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert torch.equal(seen_y[~dropped], labels[~dropped])
    fm.eval()
    fm(data, model_kwargs={"y": labels})
    assert torch.equal(field.seen[-1][2], labels)
