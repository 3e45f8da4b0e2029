"""A plain ``nn.Module`` that is not an energy, given to an energy sampler, fails at once.

An output shaped like ``x`` (a vector field), ``(B, 1)`` or the wrong batch size was summed
and differentiated, so Langevin and gradient descent ran on the gradient of a sum of field
components and returned garbage. A true energy ``(B,)`` keeps working (closed form checked).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.core.errors import ShapeError
from torchebm.samplers import GradientDescentSampler, LangevinDynamics, NesterovSampler


class Field(nn.Module):
    """A vector field ``(B, d) -> (B, d)``: what a flow model returns."""

    def forward(self, x):
        return 2.0 * x


class Column(nn.Module):
    """An energy left as a column ``(B, 1)`` (a final ``Linear(h, 1)`` without squeeze)."""

    def forward(self, x):
        return 0.5 * x.pow(2).sum(-1, keepdim=True)


class ShortBatch(nn.Module):
    """Energies with one row too few ``(B - 1,)``."""

    def forward(self, x):
        return 0.5 * x[1:].pow(2).sum(-1)


class Energy(nn.Module):
    """``E(x) = |x|^2 / 2`` as ``(B,)``."""

    def forward(self, x):
        return 0.5 * x.pow(2).sum(-1)


SAMPLERS = {
    "langevin": lambda m: LangevinDynamics(m, step_size=0.01),
    "langevin-heun": lambda m: LangevinDynamics(m, step_size=0.01, integrator="heun"),
    "descent": lambda m: GradientDescentSampler(m, step_size=0.01),
    "nesterov": lambda m: NesterovSampler(m, step_size=0.01),
}
BAD = {Field: r"\(8, 2\)", Column: r"\(8, 1\)", ShortBatch: r"\(7,\)"}


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("model", BAD, ids=lambda c: c.__name__)
def test_a_non_energy_model_is_named_with_what_it_returned(sampler, model):
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(
        ShapeError, match=rf"{model.__name__} must return energies .*got {BAD[model]}"
    ):
        SAMPLERS[sampler](model()).sample(x=x, n_steps=3)


def test_a_plain_module_energy_still_descends_in_closed_form():
    # E = |x|^2/2, grad = x: n steps of size h give x (1 - h)^n (float64 reference)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    out = GradientDescentSampler(Energy(), step_size=0.1).sample(x=x.clone(), n_steps=5)
    ref = x.double() * (1.0 - 0.1) ** 5
    torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-6)
