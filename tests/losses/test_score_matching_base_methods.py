"""Methods of every score-matching loss: the default regulariser ``loss + λ mean_b |∇_x E|^2``
on the data, and ``compute_score`` $= +\nabla_x E$ (torchebm 0.8.9's meaning, which its
subclasses rely on; the model score is its negative).

Reference: a diagonal quadratic energy $E = \\tfrac12\\sum_i w_i x_i^2$, whose gradient
$w \\odot x$ is written by hand, so $R = \\frac1B\\sum_b\\sum_i (w_i x_{bi})^2$ is exact.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.core import BaseModel
from torchebm.losses import DenoisingScoreMatching, ScoreMatching, SlicedScoreMatching

F64 = torch.float64


class DiagQuadratic(BaseModel):
    """``E = 1/2 sum_i w_i x_i^2`` with fixed curvatures ``w``."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=F64))

    def forward(self, x):
        return 0.5 * (self.w * x.pow(2)).sum(-1)


@pytest.mark.parametrize(
    "make",
    [
        lambda m, **kw: ScoreMatching(m, dtype=F64, **kw),
        lambda m, **kw: ScoreMatching(m, hessian_method="hutchinson", dtype=F64, **kw),
        lambda m, **kw: SlicedScoreMatching(m, dtype=F64, **kw),
        lambda m, **kw: DenoisingScoreMatching(m, noise_scale=0.1, dtype=F64, **kw),
    ],
    ids=["exact", "hutchinson", "sliced", "denoising"],
)
def test_default_regularizer_is_the_squared_gradient_norm_summed_over_the_event(make):
    w = torch.tensor([0.5, 1.5, 3.0], dtype=F64)
    model = DiagQuadratic(w)
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    lam = 0.7
    plain = make(model)(x, generator=torch.Generator().manual_seed(1))
    regularised = make(model, regularization_strength=lam)(
        x, generator=torch.Generator().manual_seed(1)
    )
    reference = (w * x).pow(2).sum(1).mean()  # |grad E|^2 = sum_i (w_i x_i)^2, mean over b
    # R is about 3.9 here; a 5% error in lambda or R moves the difference by about 0.14
    torch.testing.assert_close(regularised - plain, lam * reference, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("use_autograd", [True, False])
def test_compute_score_is_the_energy_gradient_at_the_perturbed_point_as_in_0_8_9(use_autograd):
    # 0.8.9 (and API.md) return +grad E: a 0.8.9 subclass's DSM objective built on it
    # learned w = -0.92 instead of +0.92 when the sign was flipped
    w = torch.tensor([0.5, 1.5, 3.0], dtype=F64)
    loss = DenoisingScoreMatching(
        DiagQuadratic(w), noise_scale=0.1, dtype=F64, use_autograd=use_autograd
    )
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    noise = 0.3 * torch.randn(8, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    torch.testing.assert_close(loss.compute_score(x), w * x, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(loss.compute_score(x, noise), w * (x + noise), rtol=1e-12, atol=0.0)
