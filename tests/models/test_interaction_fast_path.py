"""`InteractionModel.gradient`'s closed form agrees with autograd through `forward` where it
applies, and steps aside where it does not (a redefined `forward`); a 1-D input is one
sample, as `BaseModel.gradient` treats it."""

import torch

from torchebm.core import BaseModel, HarmonicModel
from torchebm.models import InteractionModel

F64 = torch.float64


def test_one_dimensional_input_is_one_sample():
    """A single sample has no partner to repel: E = V(x), grad = grad V = k x. The closed
    form used to centre x on the mean of its coordinates (max error 2.6 here)."""
    m = InteractionModel(HarmonicModel(k=2.0, dtype=F64), sigma_w=0.7, strength=0.3)
    x = torch.tensor([0.9, -1.3, 0.4], dtype=F64)
    torch.testing.assert_close(m.gradient(x), 2.0 * x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(BaseModel.gradient(m, x), 2.0 * x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m(x), 0.5 * 2.0 * x.square().sum().reshape(1))


def test_subclass_redefining_forward_gets_the_autograd_gradient():
    """The closed form is the gradient of InteractionModel's own energy only."""

    class Doubled(InteractionModel):
        def forward(self, x):
            return 2.0 * super().forward(x)

    s, sigma, k = 0.5, 1.0, 1.0
    m = Doubled(HarmonicModel(k=k, dtype=F64), sigma_w=sigma, strength=s)
    x = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    # 2 * (k x_i - 2 s B / sigma^2 (x_i - mean)), derived by hand
    expected = 2.0 * (k * x - 2 * s * 5 / sigma**2 * (x - x.mean(0)))
    torch.testing.assert_close(m.gradient(x), expected, rtol=1e-12, atol=1e-12)


def test_forward_replaced_on_the_instance_gets_the_autograd_gradient():
    m = InteractionModel(HarmonicModel(k=1.0, dtype=F64), sigma_w=1.0, strength=0.5)
    m.forward = lambda x: 1.5 * x.square().sum(-1)  # grad = 3 x, by hand
    x = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(m.gradient(x), 3.0 * x, rtol=1e-12, atol=1e-12)
