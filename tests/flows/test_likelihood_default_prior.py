"""The default prior of `probability_flow_log_likelihood`: $\\mathcal N(0, \\sigma(t_0)^2 I)$.

Reference: a linear field $v(x, t) = c\\,x$, whose flow from $t_1$ down to $t_0$ is
$z = x\\,e^{-c\\Delta}$ with $\\int\\nabla\\cdot v\\,dt = c D \\Delta$ ($\\Delta = t_1 - t_0$),
and the Gaussian log-density written by hand. With ``t_noise = 0.5`` on the linear path
$\\sigma(t_0) = 0.5$, so the normaliser $-D\\log\\sigma$ (2.08 nats here) is tested; at
$t_0 = 0$ it vanishes ($\\sigma = 1$), which hid a 5% error in it.
"""

from __future__ import annotations

import math

import torch

from torchebm.flows import probability_flow_log_likelihood

F64 = torch.float64
C, T0, T1, D = 0.3, 0.5, 1.0, 3


def test_default_prior_normalises_with_sigma_at_t_noise():
    x = torch.randn(8, D, generator=torch.Generator().manual_seed(0), dtype=F64)
    r = probability_flow_log_likelihood(
        lambda y, t: C * y, x, t_noise=T0, t_data=T1, atol=1e-10, rtol=1e-10
    )
    delta = T1 - T0
    z = x * math.exp(-C * delta)
    s = 1.0 - T0  # sigma(t) = 1 - t on the linear path
    prior = -0.5 * z.square().sum(1) / s**2 - D * math.log(s) - 0.5 * D * math.log(2 * math.pi)
    torch.testing.assert_close(r.noise, z, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(r.prior_log_prob, prior, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(r.log_likelihood, prior - C * D * delta, rtol=1e-7, atol=1e-7)
