"""`DenoisingScoreMatching` of a float16 model at the default ``noise_scale=0.01``: the target
noise / sigma^2 is ~1e4 and its square is past float16's largest value (65504), so every
batch was inf and the loss raised a NonFiniteError blaming the learning rate (found by the
resources review). The squared error is formed in at least float32 now."""

from __future__ import annotations

import copy

import pytest
import torch
from _support.losses import MLPEnergy

from torchebm.losses import DenoisingScoreMatching, ScoreMatching, SlicedScoreMatching


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_dsm_is_finite_and_agrees_with_float32(half):
    torch.manual_seed(0)
    model = MLPEnergy(dim=4, hidden=32)
    x = torch.randn(256, 4)
    full = DenoisingScoreMatching(model)(x, generator=torch.Generator().manual_seed(1))
    low_model = copy.deepcopy(model).to(half)
    low = DenoisingScoreMatching(low_model, dtype=half)
    value = low(x.to(half), generator=torch.Generator().manual_seed(1))
    assert value.dtype == torch.float32 and torch.isfinite(value)
    # the same noise draws in half precision: the model's gradient, rounded to 3 (float16)
    # or 2 (bfloat16) significant digits, against a target of ~1e4 per coordinate
    ratio = float(value.detach()) / float(full.detach())
    assert abs(ratio - 1) < 0.05, ratio
    value.backward()
    grads = [p.grad for p in low_model.parameters() if p.grad is not None]  # (not the output
    assert grads and all(torch.isfinite(g).all() for g in grads)  # bias: grad_x E has none)


class _Steep(torch.nn.Module):
    """E = w |x|^2 with w = 50: a score of ~100 per coordinate, as a model that DSM fitted at
    sigma = 0.01 has; its squared norm (~1e5 in 8-D) is past float16's 65504."""

    def __init__(self, dtype, w=50.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w, dtype=dtype))

    def forward(self, x):
        return self.w * x.pow(2).sum(-1)


@pytest.mark.parametrize(
    "make",
    [
        lambda m, dt: ScoreMatching(m, dtype=dt),
        lambda m, dt: SlicedScoreMatching(m, dtype=dt),
        lambda m, dt: SlicedScoreMatching(m, variance_reduction=True, dtype=dt),
        lambda m, dt: DenoisingScoreMatching(m, regularization_strength=0.1, dtype=dt),
    ],
    ids=["exact", "sliced", "sliced_vr", "dsm_regularised"],
)
def test_score_norms_of_float16_models_do_not_overflow(make):
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    values = []
    for dt in (torch.float32, torch.float16):
        loss = make(_Steep(dt), dt)
        values.append(loss(x.to(dt), generator=torch.Generator().manual_seed(1)).detach())
    assert torch.isfinite(values[1]), values  # was inf for float16
    assert abs(float(values[1]) / float(values[0]) - 1) < 0.02, values


@pytest.mark.parametrize(
    "make",
    [
        lambda m, dt: ScoreMatching(m, dtype=dt),
        lambda m, dt: ScoreMatching(m, hessian_method="hutchinson", dtype=dt),
        lambda m, dt: ScoreMatching(m, hessian_method="approx", dtype=dt),
        lambda m, dt: ScoreMatching(m, hessian_method="hutchinson", use_autograd=False, dtype=dt),
        lambda m, dt: SlicedScoreMatching(m, dtype=dt),
        lambda m, dt: SlicedScoreMatching(m, projection_type="gaussian", dtype=dt),
    ],
    ids=["exact", "hutchinson", "approx", "hutchinson_func", "sliced", "sliced_gaussian"],
)
def test_hessian_traces_of_float16_models_do_not_overflow(make):
    # w = 5000 at |x| ~ 0.01: scores of ~100 and a Hessian of 1e4 per coordinate (a model
    # fitted by DSM at sigma = 0.01): the trace, 8e4, is past float16's 65504 (the commit
    # review: the squared norms alone in float32 left the traces at inf)
    x = 0.01 * torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    values = []
    for dt in (torch.float32, torch.float16):
        loss = make(_Steep(dt, w=5000.0), dt)
        values.append(loss(x.to(dt), generator=torch.Generator().manual_seed(1)).detach())
    assert torch.isfinite(values[1]), values
    assert abs(float(values[1]) / float(values[0]) - 1) < 2e-3, values
