"""SDE Runge-Kutta integrators: noise amplitude, generator discipline, stationary laws."""

import math

import pytest
import torch

from torchebm.integrators import (
    BackwardEulerMaruyamaIntegrator,
    EulerMaruyamaIntegrator,
    HeunIntegrator,
)

F64 = torch.float64


def zero(x, t):
    return torch.zeros_like(x)


def test_one_step_variance_is_2_h_sigma2():
    em = EulerMaruyamaIntegrator(dtype=F64)
    g = torch.Generator().manual_seed(0)
    n, h, sigma = 200_000, 0.01, 2.0
    y = em.step({"x": torch.zeros(n, 1, dtype=F64)}, h, drift=zero, noise_scale=sigma, generator=g)[
        "x"
    ]
    var = y.var().item()
    # var of the sample variance: 2 s^4 / n -> 5 sigma band
    target = 2 * h * sigma**2
    assert abs(var - target) < 5 * target * math.sqrt(2 / n)


def test_langevin_update_formula_with_given_noise():
    em = EulerMaruyamaIntegrator(dtype=F64)
    x = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    xi = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    h, s = 0.05, 0.7
    y = em.step({"x": x}, h, drift=lambda x, t: -x, noise_scale=s, noise=xi)["x"]
    assert torch.allclose(y, x - h * x + s * math.sqrt(2 * h) * xi)
    # diffusion D given directly (and as a callable evaluated at (x_n, t_n))
    y2 = em.step({"x": x}, h, drift=lambda x, t: -x, diffusion=s * s, noise=xi)["x"]
    y3 = em.step(
        {"x": x},
        h,
        drift=lambda x, t: -x,
        diffusion=lambda x, t: torch.full((5,), s * s, dtype=F64),
        noise=xi,
    )["x"]
    assert torch.allclose(y, y2) and torch.allclose(y, y3)
    # per-sample noise scales
    ns = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5], dtype=F64)
    y4 = em.step({"x": x}, h, drift=lambda x, t: -x, noise_scale=ns, noise=xi)["x"]
    assert torch.allclose(y4, x - h * x + ns[:, None] * math.sqrt(2 * h) * xi)


def test_generator_determinism_and_global_rng_untouched():
    em = EulerMaruyamaIntegrator()
    x = torch.zeros(16, 2)
    state = torch.get_rng_state()
    a = em.integrate(
        {"x": x},
        0.1,
        5,
        drift=lambda x, t: -x,
        noise_scale=1.0,
        generator=torch.Generator().manual_seed(3),
    )["x"]
    b = em.integrate(
        {"x": x},
        0.1,
        5,
        drift=lambda x, t: -x,
        noise_scale=1.0,
        generator=torch.Generator().manual_seed(3),
    )["x"]
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())
    # without a generator the global stream is consumed
    em.step({"x": x}, 0.1, drift=lambda x, t: -x, noise_scale=1.0)
    assert not torch.equal(state, torch.get_rng_state())


def test_no_noise_means_no_random_draw():
    state = torch.get_rng_state()
    HeunIntegrator().step({"x": torch.ones(3, 2)}, 0.1, drift=lambda x, t: -x)
    EulerMaruyamaIntegrator().step(
        {"x": torch.ones(3, 2)}, 0.1, drift=lambda x, t: -x, noise_scale=0.0
    )
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize(
    "cls", [EulerMaruyamaIntegrator, HeunIntegrator, BackwardEulerMaruyamaIntegrator]
)
def test_ornstein_uhlenbeck_stationary_variance(cls):
    """dx = -x dt + sqrt(2 s^2) dW has stationary variance s^2 (up to O(h) bias)."""
    integ = cls(dtype=F64)
    g = torch.Generator().manual_seed(4)
    n, h, s = 4000, 0.02, 0.8
    x = torch.zeros(n, 2, dtype=F64)
    x = integ.integrate({"x": x}, h, 400, drift=lambda x, t: -x, noise_scale=s, generator=g)["x"]
    var = x.var(dim=0).mean().item()
    # EM: s^2 / (1 - h/2); Heun / implicit: closer. Statistical band ~ 5 * s^2 * sqrt(2/(2n))
    assert abs(var - s**2) < 0.02 * s**2 + 5 * s**2 * math.sqrt(1 / n)


def test_time_dependent_diffusion_is_evaluated_on_the_grid():
    em = EulerMaruyamaIntegrator(dtype=F64)
    seen = []

    def diffusion(x, t):
        seen.append(float(t[0]))
        return torch.ones(x.shape[0], dtype=F64)

    grid = torch.linspace(1.0, 0.0, 5, dtype=F64)
    em.integrate(
        {"x": torch.zeros(2, 1, dtype=F64)},
        t=grid,
        drift=zero,
        diffusion=diffusion,
        generator=torch.Generator().manual_seed(0),
    )
    assert seen == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_decreasing_grid_noise_uses_abs_dt():
    em = EulerMaruyamaIntegrator(dtype=F64)
    g = torch.Generator().manual_seed(5)
    y = em.integrate(
        {"x": torch.zeros(100_000, 1, dtype=F64)},
        t=torch.tensor([1.0, 0.5], dtype=F64),
        drift=zero,
        noise_scale=1.0,
        generator=g,
    )["x"]
    assert abs(y.var().item() - 1.0) < 0.03
