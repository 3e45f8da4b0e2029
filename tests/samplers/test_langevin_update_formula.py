"""`langevin_update`, the one implementation of the Langevin step, against the hand-written formula.

$x' = \\operatorname{clamp}(x - \\eta\\,g + \\sigma\\sqrt{2\\eta}\\,\\xi)$ with given draws $\\xi$:
the out-of-place form (``out=None``, and an ``x`` that requires grad) is the one direct
callers get (its doctest); the sampler's own chains take the in-place form. Both are compared with the formula
in float64 (exact up to rounding), and the drawn noise with its own draws.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.samplers._langevin import langevin_update

F64 = torch.float64


def _inputs():
    x = torch.randn(6, 3, dtype=F64, generator=torch.Generator().manual_seed(11))
    g = torch.randn(6, 3, dtype=F64, generator=torch.Generator().manual_seed(12))
    xi = torch.randn(6, 3, dtype=F64, generator=torch.Generator().manual_seed(13))
    return x, g, xi


@pytest.mark.parametrize("form", ["out_of_place", "in_place", "requires_grad"])
def test_one_update_is_x_minus_eta_g_plus_sigma_sqrt_2eta_xi(form):
    x, g, xi = _inputs()
    eta, sigma = 0.07, 0.6
    expected = x - eta * g + sigma * math.sqrt(2 * eta) * xi
    if form == "in_place":
        y = x.clone()
        out = langevin_update(y, g, eta, sigma, noise=xi, out=y)
        assert out is y  # the sampler's own chains are updated in place
    elif form == "requires_grad":
        y = x.clone().requires_grad_(True)
        out = langevin_update(y, g, eta, sigma, noise=xi, out=y)
        assert out is not y and torch.equal(y.detach(), x)  # never in place on a leaf
    else:
        out = langevin_update(x, g, eta, sigma, noise=xi)
        assert out is not x
    torch.testing.assert_close(out.detach(), expected, rtol=0, atol=1e-12)


def test_clamp_and_drawn_noise():
    x, g, _ = _inputs()
    eta, sigma = 0.5, 1.3
    out = langevin_update(
        x, g, eta, sigma, clamp=(-0.4, 0.3), generator=torch.Generator().manual_seed(5)
    )
    xi = torch.randn(6, 3, dtype=F64, generator=torch.Generator().manual_seed(5))
    expected = (x - eta * g + sigma * math.sqrt(2 * eta) * xi).clamp(-0.4, 0.3)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # the clamp is active on both sides here: the test cannot pass without it
    assert (expected == -0.4).any() and (expected == 0.3).any()
    # no noise: no draw, the generator is untouched
    gen = torch.Generator().manual_seed(5)
    state = gen.get_state()
    quiet = langevin_update(x, g, eta, 0.0, generator=gen)
    torch.testing.assert_close(quiet, x - eta * g, rtol=0, atol=1e-12)
    assert torch.equal(gen.get_state(), state)
