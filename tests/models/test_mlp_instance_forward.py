"""``MLPEnergy``'s explicit backward pass is the gradient of its own ``forward`` only: a
``forward`` replaced on the instance (``model.forward = f``, which ``model(x)`` then calls)
takes the autograd path, in ``gradient`` and in the samplers' ``gradient_function``."""

import torch

from torchebm.models import MLPEnergy


def test_forward_replaced_on_the_instance_gets_the_autograd_gradient():
    torch.manual_seed(0)
    m = MLPEnergy(2, (8,), dtype=torch.float64)
    m.forward = lambda x: 1.5 * x.square().sum(-1)  # grad = 3 x, by hand
    x = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(m.gradient(x), 3.0 * x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.gradient_function()(x), 3.0 * x, rtol=1e-12, atol=1e-12)
