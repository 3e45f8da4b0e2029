"""langevin_chain without generator/seed draws from torch's global RNG on the CPU fallback:
reproducible under torch.manual_seed, fresh noise on each call (as fused_langevin_step)."""

import torch

import torchebm.cuda as tc
from torchebm.core import HarmonicModel


def _run():
    return tc.langevin_chain(torch.zeros(2000, 2), HarmonicModel(k=1.0), 5, 0.1)


def test_chain_follows_the_global_rng():
    torch.manual_seed(123)
    a, b = _run(), _run()
    torch.manual_seed(123)
    assert torch.equal(_run(), a)  # reproducible from the global seed
    assert not torch.equal(a, b)  # a second call draws new noise
    # and the draw is the reference loop on the global stream
    torch.manual_seed(123)
    x = torch.zeros(2000, 2)
    for _ in range(5):
        x = x - 0.1 * x + (2 * 0.1) ** 0.5 * torch.randn(2000, 2)
    torch.testing.assert_close(a, x, rtol=0, atol=1e-6)
