"""SlicedScoreMatching names the caller's input shape when the model rejects it.

The loss evaluates the model on ``n_projections`` stacked copies of ``x``; before the fix
the model's `ShapeError` named only that internal batch (``(30, 3)`` for an input of shape
``(6, 3)`` and 5 projections), a shape the caller never passed.
"""

from __future__ import annotations

import pytest
import torch

from torchebm.core import BaseModel
from torchebm.core.errors import ShapeError
from torchebm.losses import SlicedScoreMatching


class Width2(BaseModel):
    """``|x|^2 / 2`` of ``(B, 2)`` inputs; another width is a `ShapeError` (as the library's
    models raise; this test runs with the losses and core only)."""

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != 2:
            raise ShapeError(f"Width2 expects x of shape (B, 2), got {tuple(x.shape)}")
        return 0.5 * x.square().sum(1)


@pytest.mark.parametrize("n_projections", [1, 5])
def test_the_error_names_the_input_shape(n_projections):
    loss = SlicedScoreMatching(Width2(), n_projections=n_projections)
    x = torch.randn(6, 3)
    with pytest.raises(ShapeError) as err:
        loss(x)
    msg = str(err.value)
    assert msg.startswith("SlicedScoreMatching: the model rejected x of shape (6, 3)")
    assert f"its {n_projections} projection copies stacked, shape ({6 * n_projections}, 3)" in msg
    assert "Width2 expects x of shape (B, 2)" in msg  # the model's own message follows
    assert torch.isfinite(loss(torch.randn(6, 2)))
