"""A `DenoisingScoreMatching` noise schedule that reaches 0 (accepted: a scheduled positive
parameter needs start and end values >= 0) made the target noise / sigma^2 = 0/0: the loss
raised a NonFiniteError blaming "the learning rate, sampler step size, data scale", and under
``nan_policy="warn"`` one SGD step made every parameter NaN (found by the losses review). The
loss now refuses the step with an error naming ``noise_scale``, before any update."""

from __future__ import annotations

import pytest
import torch
from _support.losses import MLPEnergy

from torchebm.core import LinearScheduler
from torchebm.core.errors import ConfigurationError
from torchebm.losses import DenoisingScoreMatching


@pytest.mark.parametrize("nan_policy", ["raise", "warn"])
def test_a_schedule_at_zero_is_refused_naming_noise_scale(nan_policy):
    torch.manual_seed(0)
    model = MLPEnergy(2, 8)
    dsm = DenoisingScoreMatching(
        model, noise_scale=LinearScheduler(0.5, 0.0, 2), nan_policy=nan_policy
    )
    x = torch.randn(16, 2)
    assert torch.isfinite(dsm(x))  # sigma = 0.5
    dsm.step_schedulers()
    assert torch.isfinite(dsm(x))  # sigma = 0.25
    dsm.step_schedulers()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ConfigurationError, match=r"noise_scale must be > 0 .* at 0\.0"):
        dsm(x)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
