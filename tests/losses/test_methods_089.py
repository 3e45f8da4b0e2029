"""Loss methods and defaults that torchebm 0.8.9 code calls directly keep working."""

from __future__ import annotations

import math

import pytest
import torch
from _support.losses import Quadratic, TinyLangevin

from torchebm.core import DoubleWellModel
from torchebm.core._module import _WARNED
from torchebm.core.errors import ShapeError
from torchebm.losses import (
    BaseContrastiveDivergence,
    ContrastiveDivergence,
    DenoisingScoreMatching,
    ScoreMatching,
    SlicedScoreMatching,
)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def _forget_warnings(fragment):
    """Let the once-per-process deprecation warnings whose key holds ``fragment`` fire again."""
    for key in [k for k in _WARNED if fragment in k]:
        _WARNED.discard(key)


def test_get_negative_samples_without_buffer_is_scaled_noise():
    model = Quadratic()
    cd = ContrastiveDivergence(model, TinyLangevin(model), init_noise_scale=0.5)
    n = 20_000
    out = cd.get_negative_samples(None, n, (2,), generator=gen(0))
    assert out.shape == (n, 2) and out.dtype == torch.float32
    # std of n normal draws: standard error 0.5 / sqrt(2 n) per coordinate; 5 of them
    se = 0.5 / math.sqrt(2 * n)
    assert (out.std(0) - 0.5).abs().max() < 5 * se
    assert out.mean(0).abs().max() < 5 * 0.5 / math.sqrt(n)


def test_get_negative_samples_mixes_fresh_rows_and_buffer_rows():
    model = Quadratic()
    cd = ContrastiveDivergence(
        model, TinyLangevin(model), persistent=True, buffer_size=50, new_sample_ratio=0.25
    )
    cd.initialize_buffer((2,), generator=gen(0))
    cd.replay_buffer.copy_(torch.arange(100.0).reshape(50, 2) + 1000.0)  # far from the noise
    kept = cd.replay_buffer.clone()
    out = cd.get_negative_samples(None, 16, (2,), generator=gen(1))
    n_new = max(1, int(16 * 0.25))
    assert out[:n_new].abs().max() < 10  # fresh N(0, 1) rows
    rows = (out[n_new:, None, :] == kept[None]).all(-1)  # (12, 50): equal to a buffer row
    assert rows.any(1).all()
    assert torch.equal(cd.replay_buffer, kept)  # not written
    with pytest.raises(ShapeError, match="replay buffer"):
        cd.get_negative_samples(None, 4, (3,))


def test_compute_loss_accepts_pred_x_with_one_warning():
    model = DoubleWellModel()
    cd = ContrastiveDivergence(model, TinyLangevin(model), energy_reg_weight=0.0)
    x = torch.linspace(-1, 1, 8).reshape(4, 2)
    neg = x + 0.5
    expected = model(x).mean() - model(neg).mean()
    _forget_warnings("pred_x")
    with pytest.warns(DeprecationWarning, match="pred_x"):
        old = cd.compute_loss(x, pred_x=neg)
    torch.testing.assert_close(old, expected)
    torch.testing.assert_close(cd.compute_loss(x, neg), expected)
    with pytest.raises(TypeError, match="pred_x"):
        cd.compute_loss(x, pred_x=neg, negatives=neg)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: ScoreMatching(m),
        lambda m: SlicedScoreMatching(m),
        lambda m: DenoisingScoreMatching(m, noise_scale=0.1),
    ],
)
def test_score_matching_compute_loss_without_model_kwargs(make):
    loss = make(DoubleWellModel())
    x = torch.linspace(-1, 1, 8).reshape(4, 2)
    bare = loss.compute_loss(x, generator=gen(0))
    explicit = loss.compute_loss(x, model_kwargs={}, generator=gen(0))
    assert bare.shape == () and torch.isfinite(bare)
    torch.testing.assert_close(bare, explicit, rtol=0, atol=0)


def test_exact_score_matching_compute_loss_closed_form():
    """E = a/2 |x|^2 in D dims: 1/2 |grad E|^2 - tr H = a^2 |x|^2 / 2 - a D."""
    a, d = 1.5, 3
    x = torch.randn(64, d, generator=gen(0), dtype=torch.float64)
    loss = ScoreMatching(Quadratic(a).double(), dtype=torch.float64).compute_loss(x)
    expected = (0.5 * a * a * x.square().sum(1) - a * d).mean()
    torch.testing.assert_close(loss, expected)


class _Keep:
    def sample(self, x=None, n_steps=1, **kw):
        return x


class _OwnCD(BaseContrastiveDivergence):
    def compute_loss(self, x, negatives, *, model_kwargs=None, generator=None, **options):
        return self.energy(x).mean() - self.energy(negatives).mean()


def test_base_cd_defaults_and_positional_dtype_as_in_0_8_9():
    model = Quadratic()
    sampler = TinyLangevin(model, n_steps=60)
    assert _OwnCD(model, sampler).k_steps == 1  # 0.8.9's base default
    assert _OwnCD(model, sampler, k_steps=None).k_steps == 60
    _forget_warnings("positional_dtype")
    with pytest.warns(DeprecationWarning, match="init_noise_scale"):  # nothing with weights
        cd = _OwnCD(DoubleWellModel(), _Keep(), 1, False, 100, 0.0, 0, torch.float64)
    assert cd.dtype == torch.float64 and cd.init_noise_scale == 1.0


def test_contrastive_divergence_trainer_at_its_089_module_path():
    # 0.8.9 defined it in torchebm.core.base_trainer; that import failed with a bare
    # "cannot import name"
    from torchebm.core.base_trainer import ContrastiveDivergenceTrainer
    from torchebm.losses import ContrastiveDivergenceTrainer as current

    assert ContrastiveDivergenceTrainer is current
