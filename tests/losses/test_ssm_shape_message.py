"""SlicedScoreMatching names the caller's input shape when the model rejects it.

The loss evaluates the model on ``n_projections`` stacked copies of ``x``; before the fix
the model's `ShapeError` named only that internal batch (``(30, 3)`` for an input of shape
``(6, 3)`` and 5 projections), a shape the caller never passed.
"""

from __future__ import annotations

import pytest
import torch

from torchebm.core.errors import ShapeError
from torchebm.losses import SlicedScoreMatching
from torchebm.models import MLPEnergy


@pytest.mark.parametrize("n_projections", [1, 5])
def test_the_error_names_the_input_shape(n_projections):
    loss = SlicedScoreMatching(MLPEnergy(2, (8,)), n_projections=n_projections)
    x = torch.randn(6, 3)
    with pytest.raises(ShapeError) as err:
        loss(x)
    msg = str(err.value)
    assert msg.startswith("SlicedScoreMatching: the model rejected x of shape (6, 3)")
    assert f"its {n_projections} projection copies stacked, shape ({6 * n_projections}, 3)" in msg
    assert "MLPEnergy expects x of shape (B, 2)" in msg  # the model's own message follows
    assert torch.isfinite(loss(torch.randn(6, 2)))
