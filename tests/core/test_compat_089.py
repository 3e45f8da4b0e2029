"""Pieces of torchebm 0.8.9 that core now carries: test-function energies and renamed
keyword arguments (EMA, profiling and the distributed aliases: tests/utils)."""

from __future__ import annotations

import warnings

import pytest
import torch

from torchebm.core import (
    BaseModel,
    BoothModel,
    HimmelblauModel,
    StyblinskiTangModel,
    renamed_kwargs,
)
from torchebm.core.errors import ShapeError

MODELS = [
    lambda: BoothModel(dtype=torch.float64),
    lambda: HimmelblauModel(dtype=torch.float64),
    lambda: StyblinskiTangModel(dtype=torch.float64),
]


@pytest.mark.parametrize("make", MODELS)
def test_closed_form_gradient_equals_autograd(make):
    gen = torch.Generator().manual_seed(1)
    model = make()
    x = (torch.randn(32, 2, dtype=torch.float64, generator=gen) * 3).requires_grad_(True)
    (auto,) = torch.autograd.grad(model(x).sum(), x)
    g = model.gradient(x.detach())
    assert g.shape == x.shape and g.dtype == torch.float64
    torch.testing.assert_close(g, auto, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(BaseModel.gradient(model, x.detach()), g, rtol=1e-12, atol=1e-12)


def test_known_minima_and_values():
    assert BoothModel()(torch.tensor([[1.0, 3.0]])).item() == 0.0
    assert BoothModel()(torch.tensor([[0.0, 0.0]])).item() == 49 + 25
    for p in [(3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)]:
        assert (
            HimmelblauModel(dtype=torch.float64)(torch.tensor([p], dtype=torch.float64)).item()
            < 1e-9
        )
    x_star = -2.903534
    st = StyblinskiTangModel(dtype=torch.float64)
    e = st(torch.full((1, 5), x_star, dtype=torch.float64)).item()
    assert e == pytest.approx(-39.16617 * 5, rel=1e-6)
    assert st.gradient(torch.full((1, 5), x_star, dtype=torch.float64)).abs().max() < 1e-4
    assert StyblinskiTangModel()(torch.tensor([1.0, 2.0])).shape == (1,)


def test_two_dimensional_models_reject_other_dims():
    with pytest.raises(ShapeError, match="last dim 2"):
        BoothModel()(torch.zeros(4, 3))
    with pytest.raises(ShapeError, match="last dim 2"):
        HimmelblauModel().gradient(torch.zeros(4, 1))


def test_renamed_kwargs_warns_once_and_maps():
    @renamed_kwargs(old="new")
    def f(new, other=0):
        return new + other

    with pytest.warns(DeprecationWarning, match=r"old=.*now new="):
        assert f(old=2, other=1) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f(old=2) == 2  # once per process
        assert f(new=5) == 5
    with pytest.raises(TypeError, match="both old="):
        f(old=1, new=2)
    assert f.__renamed_kwargs__ == {"old": "new"}


def test_couplings_written_for_089_implement_solve_and_generate_under_the_old_names():
    # 0.8.9's bases asked subclasses for `_solve(cost, generator=None)` and
    # `_generate(x0, generator=None, **kwargs)`; such a class could not be instantiated
    # (abstract `solve`/`generate`)
    from torchebm.core import BaseCostCoupling, BaseModelCoupling

    class Reverse(BaseCostCoupling):
        def _solve(self, cost, generator=None):
            self.seen = (cost.shape, generator)
            return torch.arange(cost.shape[0] - 1, -1, -1)

    class Scale(BaseModelCoupling):
        def _generate(self, x0, generator=None, **kwargs):
            return self.model * x0 + kwargs.get("shift", 0.0)

    x0, x1 = torch.zeros(3, 2), torch.arange(6.0).reshape(3, 2)
    gen = torch.Generator().manual_seed(0)
    result = Reverse()(x0, x1, generator=gen)
    torch.testing.assert_close(result.x1, x1.flip(0))
    assert result.x0 is x0 and Reverse().solve(torch.zeros(2, 2), None).tolist() == [1, 0]
    coupling = Reverse()
    coupling(x0, x1, generator=gen)
    assert coupling.seen == ((3, 3), gen)
    out = Scale(2.0)(x1, shift=1.0)
    torch.testing.assert_close(out.x1, 2.0 * x1 + 1.0)

    class Neither(BaseCostCoupling):  # still abstract: implementing no step is an error
        pass

    with pytest.raises(TypeError, match="abstract"):
        Neither()
