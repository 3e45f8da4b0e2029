"""An energy whose graph does not contain x (a constant: no graph; a constant made of a
parameter: a graph of the parameter only) gets one named error, with the way to keep x in
the graph, from every gradient path: autograd's own messages ("element 0 of tensors does not
require grad", "appears to not have been used in the graph") name neither the model nor x."""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.core import BaseModel
from torchebm.core._base_model import energy_gradient


class _Uniform(BaseModel):
    """The uniform density on the unit disc, written with constants (and a parameter)."""

    def __init__(self, parametrised: bool):
        super().__init__()
        self.level = torch.nn.Parameter(torch.zeros(())) if parametrised else None

    def forward(self, x):
        inside = torch.zeros(len(x)) if self.level is None else self.level.expand(len(x))
        return torch.where(x.norm(dim=1) <= 1, inside, math.inf)


@pytest.mark.parametrize("parametrised", [False, True], ids=["constant", "parameter-only"])
def test_a_model_gradient_without_x_in_the_graph_is_named(parametrised):
    with pytest.raises(RuntimeError, match=r"_Uniform.forward does not depend.*0 \* x.sum\(-1\)"):
        _Uniform(parametrised).gradient(torch.zeros(3, 2))


def test_energy_gradient_is_autograd_where_x_is_in_the_graph():
    x = torch.randn(4, 3, requires_grad=True)
    grad = energy_gradient((x**3).sum(1), x, "cube")
    assert torch.allclose(grad, 3 * x.detach() ** 2)
    with pytest.raises(RuntimeError, match="cube does not depend differentiably on x"):
        energy_gradient(x.detach().sum(1), x, "cube")


@pytest.mark.parametrize("name", ["GaussianModel", "HarmonicModel", "BoothModel", "autograd"])
def test_the_gradient_of_an_integer_x_is_refused_by_dtype(name):
    """`GaussianModel.gradient` cast its float gradient back to an int64 `x`: all zeros in
    silence ((x - mu) P is [[0.25, 0.84], [-0.64, 0.47]] here); the autograd path raised
    torch's "only Tensors of floating point dtype can require gradients", naming nothing."""
    import torchebm.core as core

    x = torch.tensor([[1, 2], [0, 1]])
    if name == "GaussianModel":
        model = core.GaussianModel(torch.tensor([0.5, 0.25]), torch.tensor([[1, 0.3], [0.3, 2]]))
    elif name == "autograd":
        model = _Quadratic()
    else:
        model = getattr(core, name)()
    with pytest.raises(TypeError, match="x must have a floating-point dtype.*torch.int64"):
        model.gradient(x)
    assert model.gradient(x.double()).dtype == torch.float64  # a float x keeps working


class _Quadratic(BaseModel):
    def forward(self, x):
        return 0.5 * x.square().sum(-1)
