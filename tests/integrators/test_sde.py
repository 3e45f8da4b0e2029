"""SDE Runge-Kutta integrators: noise amplitude, generator discipline, stationary laws."""

import math
import re

import pytest
import torch

from torchebm.core.errors import ShapeError
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


# ----------------------------------------------------------------------------- drift-implicit
# BackwardEulerMaruyama documents Kloeden & Platen's drift-implicit scheme
# x' = x + h f(x', t + h) + sqrt(2 D h) xi; it used to solve y = x + h f(y) and add the noise
# after (x' = y + sqrt(2 D h) xi), whose OU stationary variance is 0.900 instead of 0.400
# at theta h = 0.5.
def _bem_one_step(x, xi, theta, d, h):
    """The documented scheme on dx = -theta x dt + sqrt(2 D) dW, solved in closed form."""
    return (x + math.sqrt(2 * d * h) * xi) / (1 + theta * h)


@pytest.mark.parametrize("h", [0.1, 0.5])
def test_backward_euler_maruyama_step_is_the_drift_implicit_scheme(h):
    theta, d = 1.0, 0.5
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=g, dtype=F64)
    xi = torch.randn(64, 3, generator=g, dtype=F64)
    # Picard contracts by theta h per iteration: 80 iterations reach rounding for h <= 0.5
    bem = BackwardEulerMaruyamaIntegrator(solver_max_iter=80, dtype=F64)

    def drift(x, t):
        return -theta * x

    expected = _bem_one_step(x, xi, theta, d, h)
    y = bem.step({"x": x}, h, drift=drift, noise=xi, diffusion=d)["x"]
    torch.testing.assert_close(y, expected, atol=1e-13, rtol=0)
    # integrate draws xi from the generator exactly as randn does
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=F64)
    for grad in (False, True):  # the in-place (no autograd) and the out-of-place paths
        with torch.set_grad_enabled(grad):
            out = bem.integrate(
                {"x": x}, h, 1, drift=drift, diffusion=d,
                generator=torch.Generator().manual_seed(7),
            )["x"]  # fmt: skip
        torch.testing.assert_close(out, _bem_one_step(x, noise, theta, d, h), atol=1e-13, rtol=0)


def test_backward_euler_maruyama_ou_variance_is_that_of_the_drift_implicit_recursion():
    # x' = (x + sqrt(2 D h) xi) / (1 + theta h): v' = (v + 2 D h) / (1 + theta h)^2, stationary
    # 2 D h / ((1 + theta h)^2 - 1) = 0.400 here (the old scheme: 0.900; continuous OU 0.5)
    theta, d, h, n_steps = 1.0, 0.5, 0.5, 40
    n = 50_000 * 2  # independent coordinates
    v = 0.0
    for _ in range(n_steps):
        v = (v + 2 * d * h) / (1 + theta * h) ** 2
    assert abs(v - 2 * d * h / ((1 + theta * h) ** 2 - 1)) < 1e-12
    bem = BackwardEulerMaruyamaIntegrator(solver_max_iter=60, dtype=F64)
    x = bem.integrate(
        {"x": torch.zeros(n // 2, 2, dtype=F64)}, h, n_steps, drift=lambda x, t: -theta * x,
        diffusion=d, generator=torch.Generator().manual_seed(0),
    )["x"]  # fmt: skip
    # mean 0: the second moment has standard error v sqrt(2 / n) (Gaussian samples)
    tol = 4 * v * math.sqrt(2 / n)
    assert tol < 0.05 * v / 2  # a 5% error in D (5% in the variance) fails by 2x the band
    m2 = float(x.square().mean())
    assert abs(m2 - v) < tol, (m2, v, tol)
    assert abs(float(x.mean())) < 4 * math.sqrt(v / n)


@pytest.mark.parametrize(
    "cls", [EulerMaruyamaIntegrator, HeunIntegrator, BackwardEulerMaruyamaIntegrator]
)
@pytest.mark.parametrize("shape", [(4, 1), (3,), (1, 1), (4, 3, 1)])
def test_step_rejects_noise_of_another_shape(cls, shape):
    # a (4, 1) noise gave every coordinate the same noise, (3,) every chain the same
    x = torch.zeros(4, 3)
    msg = rf"noise must be a tensor of the shape of x \(4, 3\), got {re.escape(str(shape))}"
    with pytest.raises(ShapeError, match=msg):
        cls().step({"x": x}, 0.5, drift=zero, noise=torch.randn(shape), noise_scale=1.0)


def test_step_rejects_numpy_noise_of_the_right_shape():
    # its shape tuple equals x.shape, so it passed the check and failed later, unnamed
    x = torch.zeros(4, 3)
    with pytest.raises(ShapeError, match="got ndarray"):
        EulerMaruyamaIntegrator().step({"x": x}, 0.5, drift=zero, noise=x.numpy(), noise_scale=1.0)


@pytest.mark.parametrize(
    "cls", [EulerMaruyamaIntegrator, HeunIntegrator, BackwardEulerMaruyamaIntegrator]
)
def test_step_refuses_noise_of_another_dtype_and_a_bad_generator(cls):
    # a float64 noise promoted a float32 state to float64 when x required grad (and not
    # otherwise); backward EM blamed the drift. step() handed generator=0 to randn.
    x = torch.ones(4, 3)
    with pytest.raises(TypeError, match=r"noise must have the dtype and device of x"):
        cls().step({"x": x}, 0.1, drift=zero, noise_scale=1.0, noise=x.double())
    with pytest.raises(TypeError, match="generator"):
        cls().step({"x": x}, 0.1, drift=zero, noise_scale=1.0, generator=0)


def test_backward_em_names_non_finite_chains_in_its_convergence_warning():
    # a drift that turns NaN was reported only as a solver that did not converge
    def drift(x, t):
        return torch.where(t[:, None] > 0.25, torch.full_like(x, math.nan), -x)

    with pytest.warns(RuntimeWarning, match=r"in 4 of 4 chains, 4 of them non-finite"):
        BackwardEulerMaruyamaIntegrator().integrate(
            {"x": torch.ones(4, 2)}, 0.1, 5, drift=drift, noise_scale=1.0
        )


def test_backward_em_warning_on_a_one_dimensional_state():
    # counting the non-finite chains flattened from dim 1: a (B,) state raised IndexError
    with pytest.warns(RuntimeWarning, match="did not converge in 4 of 4 chains"):
        out = BackwardEulerMaruyamaIntegrator(solver_max_iter=2).integrate(
            {"x": torch.ones(4)}, 0.5, 3, drift=lambda x, t: -5 * x, noise_scale=0.0
        )
    assert out["x"].shape == (4,)
