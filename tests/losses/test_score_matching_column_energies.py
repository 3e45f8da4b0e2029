"""Score matching takes a model returning ``(B, 1)`` energies, as torchebm 0.8.9 did.

0.8.9's score-matching losses differentiated the energies' sum, so a model without the final
``.squeeze(-1)`` trained the same; here every loss checks ``(B,)`` energies, and such a model
raised ``ShapeError`` on upgrade. Score matching now squeezes a ``(B, 1)`` result with one
``DeprecationWarning`` (losses and parameter gradients equal the squeezed model's); other
shapes stay errors.
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch import nn

from torchebm.core import BaseModel
from torchebm.core._module import _WARNED
from torchebm.core.errors import ShapeError
from torchebm.losses import DenoisingScoreMatching, ScoreMatching, SlicedScoreMatching


class Column(BaseModel):
    """A small energy whose output keeps a trailing axis of ``width`` (1: 0.8.9's form)."""

    def __init__(self, width: int | None):
        super().__init__()
        torch.manual_seed(0)
        self.width = width
        self.net = nn.Sequential(nn.Linear(2, 16), nn.SiLU(), nn.Linear(16, 1))

    def forward(self, x):
        e = self.net(x) + 0.5 * x.square().sum(-1, keepdim=True)  # (B, 1)
        return e.squeeze(-1) if self.width is None else e.expand(-1, self.width)


CASES = [
    (DenoisingScoreMatching, {"noise_scale": 0.1}),
    (ScoreMatching, {}),
    (ScoreMatching, {"use_autograd": False}),
    (SlicedScoreMatching, {"projection_type": "gaussian"}),
]


def _loss_and_grads(loss_cls, options, width):
    model = Column(width)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    loss = loss_cls(model=model, **options)(x, generator=torch.Generator().manual_seed(2))
    # (the output bias does not reach the energy gradient: no gradient for it)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    return loss.detach(), grads


@pytest.mark.parametrize(("loss_cls", "options"), CASES)
def test_column_energies_train_as_the_squeezed_model_with_one_warning(loss_cls, options):
    _WARNED.discard("score matching (B, 1) energies")
    ref_loss, ref_grads = _loss_and_grads(loss_cls, options, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss, grads = _loss_and_grads(loss_cls, options, 1)
        _loss_and_grads(loss_cls, options, 1)  # once per process
    assert torch.equal(loss, ref_loss)
    assert sum(g is not None for g in grads) == 3
    for g, r in zip(grads, ref_grads):
        assert (g is None and r is None) or torch.equal(g, r)
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == 1
    assert re.search(
        r"energies of shape \(\d+, 1\): score matching squeezes", str(deprecations[0].message)
    )


@pytest.mark.parametrize(("loss_cls", "options"), CASES)
def test_other_energy_shapes_stay_errors(loss_cls, options):
    with pytest.raises(ShapeError, match=r"energies of shape \(B,\) = \((\d+),\), got \(\1, 2\)"):
        _loss_and_grads(loss_cls, options, 2)
