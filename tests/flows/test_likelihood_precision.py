"""probability_flow_log_likelihood of half-precision data against the closed form: the
probability-flow ODE of N(mu, s^2 I) data under the linear path has a linear velocity."""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.flows import probability_flow_log_likelihood

F64 = torch.float64


def _gaussian_velocity(mu: float, s: float):
    r"""$v(x, t) = \mu + (x - t\mu)\,(t s^2 - (1 - t)) / (t^2 s^2 + (1 - t)^2)$: the exact
    velocity of $x_t = t x_1 + (1 - t) x_0$, $x_0 \sim N(0, I)$, $x_1 \sim N(\mu, s^2 I)$."""

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tb = t.to(F64)[:, None]
        c = (tb * s**2 - (1 - tb)) / (tb**2 * s**2 + (1 - tb) ** 2)
        return (mu + (x.to(F64) - tb * mu) * c).to(x.dtype)

    return field


@pytest.mark.parametrize(
    ("dtype", "mu", "s", "tol"),
    [
        (torch.bfloat16, 0.0, 1.0, 0.02),  # was 0.15 nats off
        (torch.bfloat16, 0.0, 1e3, 0.05),  # was 19 nats off
        (torch.float16, 0.0, 1.0, 0.005),  # dopri5 exceeded max_steps in a float16 state
    ],
)
@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_half_precision_log_likelihood_matches_the_gaussian_closed_form(
    dtype, mu, s, tol, divergence
):
    x = (mu + s * torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=F64)).to(
        dtype
    )
    # log N(x; mu, s^2 I) of the rounded data, float64; 5% of it is > 0.3 nats
    ref = (-0.5 * ((x.to(F64) - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)).sum(1)
    r = probability_flow_log_likelihood(
        _gaussian_velocity(mu, s), x, divergence=divergence,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    err = (r.log_likelihood.to(F64) - ref).abs().max()
    assert err < tol, (r.log_likelihood, ref)
    assert r.log_likelihood.dtype == torch.float32


def test_a_time_window_narrower_than_the_dtypes_resolution_is_refused():
    # the solve skipped the grid check inside its checked block: [0.5, 0.5] in float32
    # integrated nothing and returned a zero log-determinant, in silence
    from torchebm.core.errors import ConfigurationError
    from torchebm.flows import probability_flow_log_likelihood

    with pytest.raises(ConfigurationError, match="strictly increasing or strictly decreasing"):
        probability_flow_log_likelihood(lambda x, t: -x, torch.randn(4, 2), t_noise=0.5,
                                        t_data=0.5 + 1e-9)  # fmt: skip
