"""A model moved (``model.to``) between two ``sample()`` calls: the second call follows it.

The sampler caches its placement (the dtype/device of the first parameter of its tree); a
``.to()`` on the model alone used to leave that cache stale, so the next call built its
chains in the old dtype and the model's forward failed on them (or, with a model that casts
its input, silently sampled in the old precision).
"""

import torch
from _support.losses import MLPEnergy  # parameterised; samplers lack torchebm-models

from torchebm.samplers import GradientDescentSampler


def test_second_sample_follows_a_model_moved_to_float64():
    torch.manual_seed(0)
    model = MLPEnergy(2, 8)
    sampler = GradientDescentSampler(model, step_size=0.01)
    x0 = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert sampler.sample(x=x0, n_steps=2).dtype == torch.float32  # model in float32
    model.to(torch.float64)
    out = sampler.sample(x=x0, n_steps=2)
    assert out.dtype == torch.float64
    # two gradient-descent steps, the gradient by autograd through forward
    x = x0.clone()
    for _ in range(2):
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xg).sum(), xg)
        x = x - 0.01 * g
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)
