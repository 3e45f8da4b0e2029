"""Exact divergence of `probability_flow_log_likelihood` on event shapes with more than one
dimension (images ``(B, C, H, W)``, sequences ``(B, L, D)``).

Reference: the linear field $v(x, t) = M\\,\\mathrm{vec}(x)$ with a fixed non-symmetric
$M$ ($D \\times D$). Its flow from $t_1$ down to $t_0$ is $z = e^{-M\\Delta} x$ (a matrix
exponential), the divergence is $\\operatorname{tr} M$ everywhere, so
$\\log p_1(x) = \\log \\mathcal N(z; 0, I) - \\Delta\\,\\operatorname{tr} M$ (the
standard normal's closed form). Here $\\operatorname{tr} M = 2.4$ ($D = 6$) with unequal diagonal entries:
a divergence that sums one column $D$ times (or the diagonal of the wrong axis) is off by
more than a nat, against a tolerance of 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchebm.flows import probability_flow_log_likelihood

F64 = torch.float64


@pytest.mark.parametrize("event", [(2, 3), (1, 2, 3), (3, 1, 2)])
def test_exact_divergence_of_a_linear_field_on_multi_dim_events(event):
    d = int(np.prod(event))
    rng = np.random.default_rng(0)
    m = 0.3 * rng.standard_normal((d, d))
    np.fill_diagonal(m, np.linspace(-0.4, 1.2, d))
    mt = torch.tensor(m, dtype=F64)

    def field(x, t):
        return (x.reshape(x.shape[0], -1) @ mt.T).reshape(x.shape)

    x = torch.randn(5, *event, generator=torch.Generator().manual_seed(1), dtype=F64)
    r = probability_flow_log_likelihood(field, x, atol=1e-10, rtol=1e-10, n_bins=None)
    z = x.reshape(5, -1).numpy() @ torch.linalg.matrix_exp(-mt).numpy().T
    want = -0.5 * (z**2).sum(1) - 0.5 * d * np.log(2 * np.pi) - np.trace(m)
    np.testing.assert_allclose(r.noise.reshape(5, -1).numpy(), z, rtol=0, atol=1e-7)
    np.testing.assert_allclose(r.delta_log_det.numpy(), -np.trace(m), rtol=0, atol=1e-6)
    np.testing.assert_allclose(r.log_likelihood.numpy(), want, rtol=0, atol=1e-6)
