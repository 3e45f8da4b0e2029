"""`probability_flow_log_likelihood`'s default dequantisation offset in ``bits_per_dim``:
256 levels on ``(-1, 1)`` (+7 bits) for image-shaped input (4 or more dimensions), none for
``(B, D)`` and ``(B, L, D)`` (as documented for ``n_bins``).

Reference: the field $v = 0$ leaves $p_1 = \\mathcal N(0, I)$, so $\\log p(x)$ is the
standard normal log-density (its closed form), and bits/dim is $-\\log p / (D \\ln 2)$ plus
$\\log_2(256/2) = 7$ for images only.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torchebm.flows import probability_flow_log_likelihood

F64 = torch.float64


@pytest.mark.parametrize("shape,offset", [((3, 4), 0.0), ((3, 2, 2), 0.0), ((3, 1, 2, 2), 7.0)])
def test_default_offset_only_for_images(shape, offset):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    r = probability_flow_log_likelihood(lambda z, t: torch.zeros_like(z), x)
    d = x[0].numel()
    flat = x.reshape(shape[0], -1).numpy()
    logp = (-0.5 * flat**2 - 0.5 * np.log(2 * np.pi)).sum(1)
    np.testing.assert_allclose(r.log_likelihood.numpy(), logp, rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        r.bits_per_dim.numpy(), -logp / (d * math.log(2.0)) + offset, rtol=0, atol=1e-10
    )
