"""Positional calls written for torchebm 0.8.9 work again or say what changed."""

import pytest
import torch


def test_089_positional_calls_work_or_say_what_changed():
    from torchebm.core import DoubleWellModel
    from torchebm.losses import ContrastiveDivergence, ScoreMatching, SlicedScoreMatching

    model = DoubleWellModel()
    with pytest.raises(TypeError, match="0.8.9 the third positional argument was regularization"):
        ScoreMatching(model, "exact", 0.1)
    with pytest.raises(ValueError, match="no effect with hessian_method='exact'.*0.8.9"):
        ScoreMatching(model, "exact", 1)  # 0.8.9: a regulariser of weight 1
    assert ScoreMatching(model, "exact").hutchinson_samples == 1
    with pytest.raises(TypeError, match="0.8.9 the fourth positional argument was regularization"):
        SlicedScoreMatching(model, 5, "rademacher", 0.1)
    assert ScoreMatching(model, "hutchinson", 3).hutchinson_samples == 3

    class Sampler:
        def sample(self, x=None, n_steps=1, **kw):
            return x

    with pytest.warns(DeprecationWarning, match="dtype"):
        cd = ContrastiveDivergence(
            model, Sampler(), 1, False, 100, 0, 0.05, 0.0, False, 1e-4, torch.float64
        )
    assert cd.dtype == torch.float64
