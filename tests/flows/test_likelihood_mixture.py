"""Probability-flow log-likelihood with exact Gaussian-mixture fields against the closed form.

The field of a mixture path is not affine, so its divergence varies along the path; the
reference log-density is the mixture's marginal at ``t_data`` (`_support.mixture_paths`,
closed form, independent of the library).
"""

from __future__ import annotations

import math

import pytest
import torch
from _support.mixture_paths import Mixture, MixtureField, mixture_1d, mixture_2d

from torchebm.flows import probability_flow_log_likelihood

MIXTURES = {"1d": mixture_1d, "2d": mixture_2d}
SINGULAR_ENDS = ("linear", "cosine", "vp")  # score/noise conversions divide by t or sigma


def _window(path: str, prediction: str) -> tuple[float, float]:
    if prediction != "velocity" and path in SINGULAR_ENDS:
        return 1e-3, 1 - 1e-3
    return 0.0, (1 - 1e-3 if path == "vp" else 1.0)  # VP's closed form is singular at t = 1


@pytest.mark.parametrize("dim", sorted(MIXTURES))
@pytest.mark.parametrize("path", ["linear", "cosine", "vp", "ve", "edm"])
@pytest.mark.parametrize("prediction", ["velocity", "score", "noise"])
def test_exact_divergence_gives_the_mixture_log_density(dim, path, prediction):
    m = MIXTURES[dim]()
    x = m.sample(8, torch.Generator().manual_seed(0))
    t0, t1 = _window(path, prediction)
    r = probability_flow_log_likelihood(
        MixtureField(m, path, prediction),
        x,
        interpolant=path,
        prediction=prediction,
        t_noise=t0,
        t_data=t1,
        atol=1e-9,
        rtol=1e-9,
        prior=lambda z: m.at(path, z, t0)["log_p"],  # the exact law at t0
    )
    want = m.at(path, x, t1)["log_p"]
    torch.testing.assert_close(r.log_likelihood, want, rtol=0, atol=1e-7)


@pytest.mark.parametrize("path", ["linear", "cosine"])
def test_default_prior_is_exact_where_the_noise_end_is_pure_noise(path):
    m = mixture_2d()
    x = m.sample(8, torch.Generator().manual_seed(0))
    r = probability_flow_log_likelihood(
        MixtureField(m, path), x, interpolant=path, atol=1e-9, rtol=1e-9
    )
    torch.testing.assert_close(r.log_likelihood, m.at(path, x, 1.0)["log_p"], rtol=0, atol=1e-7)


@pytest.mark.parametrize("integrator,order", [("heun", 2), ("rk4", 4)])
def test_fixed_step_log_density_converges_at_the_integrators_order(integrator, order):
    m = mixture_2d()
    x = m.sample(4, torch.Generator().manual_seed(0))
    want = m.at("linear", x, 1.0)["log_p"]

    def err(n: int) -> float:
        r = probability_flow_log_likelihood(
            MixtureField(m, "linear"), x, integrator=integrator, n_steps=n
        )
        return (r.log_likelihood - want).abs().max().item()

    e1, e2 = err(64), err(128)  # asymptotic from 64 steps for both
    assert abs(math.log2(e1 / e2) - order) < 0.35, (e1, e2)


#: Narrow components: the divergence integral is about 2.7 nats, so a 5% bias in the estimate
#: (0.13 nats) stands out of the probe noise.
NARROW = Mixture(
    [0.3, 0.7],
    [[-1.5, 1.0], [1.5, -0.5]],
    [[[0.03, 0.01], [0.01, 0.02]], [[0.05, -0.02], [-0.02, 0.04]]],
)


@pytest.mark.parametrize("probe,r_probes", [("rademacher", 2048), ("gaussian", 16384)])
def test_hutchinson_is_unbiased_for_the_mixture(probe, r_probes):
    # r_probes probes per point: the pooled standardised error of the 4 means is N(0, 1).
    # The probe is fixed along the path and the path does not depend on it, so on one grid
    # the estimate's mean is the exact-trace solve on that grid.
    x = NARROW.sample(4, torch.Generator().manual_seed(0))
    field = MixtureField(NARROW, "linear")
    r = probability_flow_log_likelihood(
        field,
        x.repeat_interleave(r_probes, 0),
        divergence="hutchinson",
        probe=probe,
        integrator="rk4",
        n_steps=12,
        generator=torch.Generator().manual_seed(0),
    )
    ll = r.log_likelihood.reshape(4, r_probes)
    exact = probability_flow_log_likelihood(field, x, integrator="rk4", n_steps=12)
    want = NARROW.at("linear", x, 1.0)["log_p"]
    torch.testing.assert_close(exact.log_likelihood, want, rtol=0, atol=1e-3)
    se = ll.std(1) / math.sqrt(r_probes)
    z = ((ll.mean(1) - exact.log_likelihood) / se).sum() / 2.0  # 4 standard normals / sqrt(4)
    assert abs(z.item()) < 4.0, (ll.mean(1), exact.log_likelihood, se)
