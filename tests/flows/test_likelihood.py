"""Probability-flow ODE log-likelihood against the exact density of an affine Gaussian flow."""

import math

import pytest
import torch

from torchebm.core.errors import ConfigurationError, NonFiniteError
from torchebm.flows import bits_per_dim, probability_flow_log_likelihood
from torchebm.interpolants import get_interpolant

F64 = torch.float64
MEAN = torch.tensor([1.0, -0.5, 0.3], dtype=F64)
CHOL = torch.tensor([[1.0, 0.0, 0.0], [0.4, 0.7, 0.0], [-0.2, 0.3, 0.5]], dtype=F64)
COV = CHOL @ CHOL.T
EYE = torch.eye(3, dtype=F64)


def _coeffs(interp, t):
    a, da = interp.compute_alpha_t(t)
    s, ds = interp.compute_sigma_t(t)
    return a, da, s, ds


def _field(interp, kind):
    """Exact velocity / score / noise of x_t = a x1 + s x0, x1 ~ N(MEAN, COV), x0 ~ N(0, I)."""

    def f(x, t):
        a, da, s, ds = _coeffs(interp, t)
        c = a[:, None, None] ** 2 * COV + (s**2)[:, None, None] * EYE
        r = torch.linalg.solve(c, (x - a[:, None] * MEAN).unsqueeze(-1)).squeeze(-1)
        if kind == "score":
            return -r
        if kind == "noise":  # E[x0 | x_t] = -s * score
            return s[:, None] * r
        m = (a * da)[:, None, None] * COV + (s * ds)[:, None, None] * EYE
        return da[:, None] * MEAN + (m @ r.unsqueeze(-1)).squeeze(-1)

    return f


def _exact_logp(interp, t, x):
    a, _, s, _ = _coeffs(interp, torch.tensor([t], dtype=F64))
    dist = torch.distributions.MultivariateNormal(a[0] * MEAN, a[0] ** 2 * COV + s[0] ** 2 * EYE)
    return dist.log_prob(x)


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return MEAN + torch.randn(n, 3, generator=g, dtype=F64) @ CHOL.T


CASES = [(i, k) for i in ("linear", "cosine", "vp", "ve") for k in ("velocity", "score", "noise")]


@pytest.mark.parametrize(
    "name,kind",
    [
        pytest.param(i, k, marks=[pytest.mark.slow] if (i == "ve" or k != "velocity") else [])
        for i, k in CASES
    ],
)
def test_exact_divergence_matches_the_gaussian_density(name, kind):
    interp = get_interpolant(name)
    t0, t1 = (0.0, 1.0) if kind == "velocity" else (1e-3, 1 - 1e-3)
    x = _data(16, 0)
    r = probability_flow_log_likelihood(
        _field(interp, kind), x, interpolant=interp, prediction=kind, t_noise=t0, t_data=t1,
        prior=lambda z: _exact_logp(interp, t0, z), atol=1e-8, rtol=1e-8,
    )  # fmt: skip
    exact = _exact_logp(interp, t1, x)
    assert torch.allclose(r.log_likelihood, exact, atol=1e-4, rtol=0), (
        (r.log_likelihood - exact).abs().max()
    )
    assert r.nfe > 0 and r.noise.shape == x.shape
    assert torch.allclose(r.prior_log_prob + r.delta_log_det, r.log_likelihood)


def test_default_prior_is_exact_for_the_linear_path_and_fixed_steps_converge():
    interp = get_interpolant("linear")
    x = _data(8, 1)
    exact = _exact_logp(interp, 1.0, x)
    r = probability_flow_log_likelihood(_field(interp, "velocity"), x)  # dopri5, N(0, I)
    assert torch.allclose(r.log_likelihood, exact, atol=1e-4, rtol=0)
    errs = []
    for n in (10, 20):
        r = probability_flow_log_likelihood(
            _field(interp, "velocity"), x, integrator="rk4", n_steps=n
        )
        errs.append(float((r.log_likelihood - exact).abs().max()))
        assert r.nfe == 4 * n
    assert errs[1] < 1e-4 and errs[0] / errs[1] > 8  # fourth order (16x per halving)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_within_3_se(probe):
    interp = get_interpolant("cosine")
    x = _data(1, 2).expand(2000, 3).contiguous()
    exact = float(_exact_logp(interp, 1.0, x[:1]))
    r = probability_flow_log_likelihood(
        _field(interp, "velocity"), x, interpolant=interp, divergence="hutchinson", probe=probe,
        prior=lambda z: _exact_logp(interp, 0.0, z), atol=1e-6, rtol=1e-6,
        generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    est = r.log_likelihood
    se = float(est.std() / math.sqrt(est.shape[0]))
    assert 0 < 3 * se < 0.05 * abs(exact)
    assert abs(float(est.mean()) - exact) < 3 * se, (float(est.mean()), exact, se)


def test_bits_per_dim_and_image_shaped_input():
    x = torch.zeros(2, 1, 2, 2, dtype=F64)
    r = probability_flow_log_likelihood(lambda z, t: torch.zeros_like(z), x)
    logp = -0.5 * 4 * math.log(2 * math.pi)  # v = 0: p_1 = N(0, I)
    assert torch.allclose(r.log_likelihood, torch.full((2,), logp, dtype=F64))
    # 256 levels on [-1, 1]: offset log2(256 / 2) = 7
    expected = torch.full((2,), -logp / (4 * math.log(2)) + 7, dtype=F64)
    assert torch.allclose(r.bits_per_dim, expected)
    assert float(bits_per_dim(torch.tensor(0.0), 3, n_bins=256, data_range=(0, 1))) == 8.0
    assert float(bits_per_dim(torch.tensor(-math.log(2) * 3), 3)) == pytest.approx(1.0)


def test_hutchinson_is_reproducible_and_input_is_validated():
    field = _field(get_interpolant("linear"), "velocity")
    x = _data(4, 4)

    def run():
        return probability_flow_log_likelihood(
            field, x, divergence="hutchinson", integrator="heun", n_steps=4,
            generator=torch.Generator().manual_seed(0),
        ).log_likelihood  # fmt: skip

    assert torch.equal(run(), run())
    with pytest.raises(ConfigurationError, match="prediction"):
        probability_flow_log_likelihood(field, x, prediction="x0")
    with pytest.raises(ConfigurationError, match="t_noise"):
        probability_flow_log_likelihood(field, x, t_noise=0.5, t_data=0.5)
    with pytest.raises(ConfigurationError, match="n_steps"):
        probability_flow_log_likelihood(field, x, integrator="rk4")
    with pytest.raises(ConfigurationError, match="shape"):
        probability_flow_log_likelihood(lambda z, t: z[:, :1], x)
    with pytest.raises(NonFiniteError):
        probability_flow_log_likelihood(field, torch.full((2, 3), float("nan")))
    with pytest.raises(TypeError, match="Runge-Kutta|BaseRungeKutta"):
        probability_flow_log_likelihood(field, x, integrator="leapfrog")


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_a_field_with_parameters_that_ignores_x_has_zero_divergence(divergence):
    # v(x, t) = b (a parameter, not a function of x): x_0 = x - b, log p = log N(x - b; 0, I)
    class Drift(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.b = torch.nn.Parameter(torch.tensor([0.5, -0.3], dtype=torch.float64))

        def forward(self, x, t):
            return self.b.expand_as(x)

    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    res = probability_flow_log_likelihood(Drift(), x, divergence=divergence, generator=gen)
    exact = torch.distributions.Normal(0.0, 1.0).log_prob(x - Drift().b.detach()).sum(1)
    assert torch.equal(res.delta_log_det, torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(res.log_likelihood, exact, atol=1e-6)


# `torch.enable_grad()` does not lift `torch.inference_mode()`: the divergence came out 0
# there, and the log-likelihood was the prior's alone (0.29 off on this example).
@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_inference_mode_gives_the_result_of_a_plain_call(divergence):
    interp = get_interpolant("linear")
    field = _field(interp, "velocity")
    x = _data(6, 5)
    kw = dict(integrator="rk4", n_steps=40, divergence=divergence)

    def run():
        return probability_flow_log_likelihood(
            field, x, generator=torch.Generator().manual_seed(2), **kw
        )

    plain = run()
    with torch.inference_mode():
        inside = run()
        x_inf = x.clone()  # an inference tensor, which autograd cannot record
        r_inf = probability_flow_log_likelihood(
            field, x_inf, generator=torch.Generator().manual_seed(2), **kw
        )
    assert bool((plain.delta_log_det.abs() > 0.1).all())
    torch.testing.assert_close(inside.delta_log_det, plain.delta_log_det, atol=1e-12, rtol=0)
    torch.testing.assert_close(inside.log_likelihood, plain.log_likelihood, atol=1e-12, rtol=0)
    torch.testing.assert_close(r_inf.log_likelihood, plain.log_likelihood, atol=1e-12, rtol=0)
    if divergence == "exact":  # rk4 with 40 steps: within 1e-5 of the density
        exact = _exact_logp(interp, 1.0, x)
        torch.testing.assert_close(inside.log_likelihood, exact, atol=1e-5, rtol=0)


def test_a_model_without_autograd_is_named_and_a_constant_field_is_not():
    x = _data(4, 6)

    class NoGradModel(torch.nn.Module):  # e.g. a forward wrapped in torch.no_grad()
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(-0.5, dtype=F64))

        def forward(self, z, t):
            with torch.no_grad():
                return self.w * z

    for model in (NoGradModel(), lambda z, t: (-0.5 * z).detach()):
        for divergence in ("exact", "hutchinson"):
            with pytest.raises(ConfigurationError, match="depends on x but has no autograd graph"):
                probability_flow_log_likelihood(model, x, divergence=divergence)
    # a field constant in x (no graph either) has divergence 0: x_0 = x - c
    c = torch.tensor([0.5, -0.25, 1.0], dtype=F64)
    r = probability_flow_log_likelihood(lambda z, t: c.expand_as(z).clone(), x)
    exact = torch.distributions.Normal(0.0, 1.0).log_prob(x - c).sum(1)
    assert torch.equal(r.delta_log_det, torch.zeros(4, dtype=F64))
    torch.testing.assert_close(r.log_likelihood, exact, atol=1e-9, rtol=0)


# atol/rtol rebuilt an integrator instance from (atol, rtol, max_steps): its max_step_size,
# safety, factors and norm were dropped (26 evaluations with gaps of 0.24 instead of 602).
def test_tolerances_keep_the_other_settings_of_an_integrator_instance():
    from torchebm.integrators import Dopri5Integrator

    norms = []

    def norm(z):
        norms.append(1)
        return z.abs().max()

    inst = Dopri5Integrator(max_step_size=0.01, atol=1e-5, rtol=1e-5, norm=norm, safety=0.8)
    times = []

    def field(z, t):
        times.append(float(t[0]))
        return -z

    x = _data(3, 7)
    r = probability_flow_log_likelihood(field, x, integrator=inst, atol=1e-4, rtol=1e-3)
    ts = sorted(set(times), reverse=True)
    assert max(a - b for a, b in zip(ts, ts[1:])) <= 0.01 + 1e-12
    assert r.nfe >= 100 and norms  # at least 1 / 0.01 steps, each measured by `norm`
    # the instance itself is unchanged: tolerances, settings and its evaluation counter
    assert (inst.atol, inst.rtol, inst.max_step_size, inst.safety) == (1e-5, 1e-5, 0.01, 0.8)
    assert inst.norm is norm and inst.nfe == 0
    # v = -x: x_0 = e x and ell = -int div v dt = D = 3, so log p_1(x) = log N(e x; 0, I) + 3
    exact = torch.distributions.Normal(0.0, 1.0).log_prob(math.e * x).sum(1) + 3.0
    torch.testing.assert_close(r.log_likelihood, exact, atol=1e-4, rtol=0)
    with pytest.raises(ConfigurationError, match="atol"):
        probability_flow_log_likelihood(field, x, integrator=inst, atol=-1.0)


@pytest.mark.parametrize("kind", ["score", "noise"])
def test_score_and_noise_predictions_need_alpha_above_zero_at_t_noise(kind):
    """At t_noise = 0 of the linear path alpha = 0: the score -> velocity conversion divides
    by it (floored at 1e-8), so a score off by 1e-2 moved the answer by 0.4 nats between
    t_noise = 0 and 1e-2, in silence. It is refused there; VP (alpha(0) = 0.0066) is not."""
    x = _data(4, 5)
    linear = get_interpolant("linear")
    with pytest.raises(ConfigurationError, match="t_noise=0.0 with prediction"):
        probability_flow_log_likelihood(_field(linear, kind), x, prediction=kind)
    kw = dict(prediction=kind, integrator="rk4", n_steps=8)
    r = probability_flow_log_likelihood(_field(linear, kind), x, t_noise=1e-3, **kw)
    assert torch.isfinite(r.log_likelihood).all()
    vp = get_interpolant("vp")
    r = probability_flow_log_likelihood(_field(vp, kind), x, interpolant=vp, t_data=1 - 1e-3, **kw)
    assert torch.isfinite(r.log_likelihood).all()


def test_a_learnable_prior_leaves_the_result_without_gradient():
    """The result is an evaluation (docstring): a prior with parameters gave a log-likelihood
    that required grad, and `backward()` then trained the prior alone, in silence."""

    class Prior(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.log_scale = torch.nn.Parameter(torch.zeros((), dtype=F64))

        def forward(self, z):
            normal = torch.distributions.Normal(0.0, self.log_scale.exp())
            return normal.log_prob(z).sum(1)

    interp = get_interpolant("linear")
    x = _data(4, seed=0)
    prior = Prior()
    res = probability_flow_log_likelihood(
        _field(interp, "velocity"), x, n_steps=4, integrator="rk4", prior=prior
    )
    for value in (res.log_likelihood, res.bits_per_dim, res.prior_log_prob):
        assert not value.requires_grad
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(res.noise).sum(1)
    torch.testing.assert_close(res.prior_log_prob, expected)
