"""The adaptive path's ``step_size`` (its first step) is checked like the fixed path's."""

import pytest
import torch

from torchebm.core.errors import ConfigurationError
from torchebm.integrators import Dopri5Integrator

GRID = torch.tensor([0.0, 1.0])


def _run(step_size):
    return Dopri5Integrator().integrate(
        {"x": torch.ones(3, 2)}, step_size, t=GRID, drift=lambda x, t: -x
    )


@pytest.mark.parametrize("step_size", ["0.1", True, [0.1]])
def test_non_number_first_step_is_a_named_type_error(step_size):
    # "0.1" and True were taken as 0.1 and 1.0, a list failed inside float()
    with pytest.raises(TypeError, match=r"step_size must be a number or a tensor, got"):
        _run(step_size)


def test_per_sample_first_step_is_a_named_error():
    # was torch's "only one element tensors can be converted to Python scalars"
    with pytest.raises(ConfigurationError, match=r"one scalar step_size.*shape \(3,\)"):
        _run(torch.tensor([0.1, 0.2, 0.3]))


@pytest.mark.parametrize("step_size", [0.0, float("nan"), torch.tensor(float("inf"))])
def test_zero_or_non_finite_first_step(step_size):
    with pytest.raises(ConfigurationError, match="step_size must be non-zero and finite"):
        _run(step_size)


@pytest.mark.parametrize("step_size", [0.1, -0.1, torch.tensor(0.1), torch.tensor([[0.1]])])
def test_scalar_first_step_is_accepted(step_size):
    out = _run(step_size)["x"]
    assert torch.allclose(out, torch.full((3, 2), torch.e**-1), rtol=1e-3, atol=1e-5)
