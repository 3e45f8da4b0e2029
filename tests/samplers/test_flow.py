"""FlowSampler: exact Gaussian transport (ODE/SDE, every prediction type), reverse time, options."""

from __future__ import annotations

import math

import pytest
import torch
from samplers_helpers import gaussian_tolerance
from torch import nn

from torchebm.core import expand_t_like_x
from torchebm.core._module import _WARNED
from torchebm.integrators import Dopri5Integrator, EulerMaruyamaIntegrator
from torchebm.interpolants import (
    CosineInterpolant,
    LinearInterpolant,
    VariancePreservingInterpolant,
)
from torchebm.samplers import FlowSampler, PredictionType

M, S = 2.0, 0.5  # data distribution N(M, S^2) per coordinate; noise N(0, 1)


class GaussianPathField(nn.Module):
    r"""Exact fields of the path x_t = alpha x1 + sigma x0 with x1 ~ N(M, S^2), x0 ~ N(0, 1).

    The marginal is N(mu_t, V_t) with mu_t = alpha M, V_t = alpha^2 S^2 + sigma^2; velocity
    v = mu' + V'/(2V) (x - mu_t), score s = -(x - mu_t)/V_t, noise E[x0|x] = -sigma s.
    """

    def __init__(self, interpolant, prediction="velocity"):
        super().__init__()
        self.interpolant, self.prediction = interpolant, prediction

    def moments(self, t, x):
        tb = expand_t_like_x(t, x)
        a, da = self.interpolant.compute_alpha_t(tb)
        s, ds = self.interpolant.compute_sigma_t(tb)
        mu, v = a * M, a.square() * S**2 + s.square()
        return mu, v, da * M, 2 * a * da * S**2 + 2 * s * ds, s

    def forward(self, x, t):
        mu, v, dmu, dv, sigma = self.moments(t, x)
        if self.prediction == "velocity":
            return dmu + dv / (2 * v) * (x - mu)
        score = -(x - mu) / v
        return score if self.prediction == "score" else -sigma * score


def affine_map(field, x, t_from, t_to):
    """The exact ODE flow map between two times: it is affine for Gaussian paths."""
    b = x.shape[0]
    mu0, v0, *_ = field.moments(torch.full((b,), t_from, dtype=x.dtype), x)
    mu1, v1, *_ = field.moments(torch.full((b,), t_to, dtype=x.dtype), x)
    return mu1 + (v1 / v0).sqrt() * (x - mu0)


INTERPOLANTS = {
    "linear": LinearInterpolant(),
    "cosine": CosineInterpolant(),
    "vp": VariancePreservingInterpolant(),
}


def tight_dopri5():
    return Dopri5Integrator(atol=1e-8, rtol=1e-8, dtype=torch.float64)


@pytest.mark.parametrize("interp", sorted(INTERPOLANTS))
@pytest.mark.parametrize("integrator", ["dopri5", "rk4"])
def test_ode_transports_noise_to_the_data_gaussian_sample_by_sample(interp, integrator):
    field = GaussianPathField(INTERPOLANTS[interp])
    integ = tight_dopri5() if integrator == "dopri5" else "rk4"
    fs = FlowSampler(field, interpolant=INTERPOLANTS[interp], integrator=integ, dtype=torch.float64)
    x0 = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t0, t1 = fs._check_interval()
    out = fs.sample(x=x0, n_steps=100)
    err = (out - affine_map(field, x0, t0, t1)).abs().max().item()
    print(f"ODE {interp}/{integrator}: max transport error {err:.1e}")
    assert err < 1e-6
    if interp == "linear":  # the path ends exactly at the data law: x1 = M + S x0
        torch.testing.assert_close(out, M + S * x0, atol=1e-6, rtol=0)


def test_default_adaptive_ode_is_tolerance_limited():
    # the default dopri5 (atol 1e-6, rtol 1e-3) is visibly coarser than a tight one
    field = GaussianPathField(LinearInterpolant())
    x0 = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = FlowSampler(field).to(torch.float64).sample(x=x0)
    err = (out - (M + S * x0)).abs().max().item()
    print(f"default dopri5: max transport error {err:.1e}")
    assert 1e-5 < err < 0.1


@pytest.mark.parametrize("prediction", ["score", "noise"])
def test_score_and_noise_predictions_give_the_same_flow(prediction):
    interp = LinearInterpolant()
    field = GaussianPathField(interp, prediction)
    fs = FlowSampler(field, prediction=prediction, sample_eps=1e-3, integrator="rk4")
    fs = fs.to(torch.float64)
    t0, t1 = fs._check_interval()
    assert (t0, t1) == (1e-3, 1 - 1e-3)
    x0 = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = fs.sample(x=x0, n_steps=200)
    torch.testing.assert_close(out, affine_map(field, x0, t0, t1), atol=1e-5, rtol=0)


def test_fixed_step_convergence_orders():
    field = GaussianPathField(LinearInterpolant())
    x0 = torch.randn(16, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    exact = M + S * x0
    orders = {}
    for name, expected in (("euler", 1), ("heun", 2), ("rk4", 4)):
        fs = FlowSampler(field, integrator=name).to(torch.float64)
        e1 = (fs.sample(x=x0, n_steps=40) - exact).abs().max()
        e2 = (fs.sample(x=x0, n_steps=80) - exact).abs().max()
        orders[name] = math.log2(e1 / e2)
        assert abs(orders[name] - expected) < 0.3, orders
    print(f"observed orders {orders}")


def exact_em_moments(fs, field, interp, form, last_step, n_steps):
    r"""Mean and variance of the discrete Euler-Maruyama chain the SDE sampler runs.

    For the Gaussian path the drift $v + D s$ is affine in $x$: with the marginal
    $\mathcal N(\mu_t, V_t)$, $v = \mu' + \tfrac{V'}{2V}(x - \mu)$ and $s = -(x - \mu)/V$, so
    $v + D s = \mu' + b_t (x - \mu)$ with $b_t = V'/(2V) - D/V$. From $x \sim \mathcal N(0, \sigma(t_0)^2)$
    the chain $x' = x + h(\mu' + b(x - \mu)) + \sqrt{2Dh}\,\xi$ on the sampler's grid stays
    Gaussian with $m' = m + h(\mu' + b(m - \mu))$ and $P' = (1 + hb)^2 P + 2Dh$; the last step
    is the affine map $x + \Delta(\mu' + c(x - \mu))$ at $t_1$, with $c = b$ ("Mean", the SDE
    drift), $c = V'/(2V)$ ("Euler", the velocity) or no step (``None``).
    """
    t0, t1 = fs._check_interval()
    times = [t0 + (t1 - t0) * k / n_steps for k in range(n_steps)] + [t1]
    probe = torch.zeros(1, 1, dtype=torch.float64)

    def coeffs(t):
        mu, v, dmu, dv, _ = field.moments(torch.full((1,), t, dtype=torch.float64), probe)
        d = interp.compute_diffusion(probe, torch.full((1,), t, dtype=torch.float64), form)
        return mu.item(), dmu.item(), (dv / (2 * v)).item(), (d / v).item(), d.item()

    # sample(x=None) starts from the path's noise at t0, N(0, sigma(t0)^2)
    m, p = 0.0, float(interp.compute_sigma_t(torch.tensor(t0, dtype=torch.float64))[0]) ** 2
    for k in range(n_steps):
        h = times[k + 1] - times[k]
        mu, dmu, half, d_over_v, d = coeffs(times[k])
        b = half - d_over_v
        m, p = m + h * (dmu + b * (m - mu)), (1 + h * b) ** 2 * p + 2 * d * h
    if last_step is not None:
        mu, dmu, half, d_over_v, _ = coeffs(t1)
        c = half - d_over_v if last_step == "Mean" else half
        delta = fs.last_step_size
        m, p = m + delta * (dmu + c * (m - mu)), (1 + delta * c) ** 2 * p
    return m, p


@pytest.mark.parametrize(
    "form,last_step",
    [
        ("SBDM", "Mean"),
        ("sigma", "Euler"),
        ("constant", None),
        ("linear", "Mean"),
        ("decreasing", "Mean"),
        ("increasing-decreasing", "Euler"),
    ],
)
def test_sde_moments_equal_the_exact_discrete_chain(form, last_step):
    # the discrete chain is exactly Gaussian with the moments of exact_em_moments, so the
    # only tolerance is sampling error (5 standard errors): with 100 000 samples a 5% error
    # in the diffusion of the noise (3.3-4.9% in the final variance, tolerance 2.2%) fails
    interp = LinearInterpolant()
    field = GaussianPathField(interp)
    fs = FlowSampler(
        field, mode="sde", diffusion_form=form, last_step=last_step, sample_eps=0.01
    ).to(torch.float64)
    n, n_steps = 100_000, 100
    g = torch.Generator().manual_seed(3)
    x = fs.sample(dim=1, n_samples=n, n_steps=n_steps, generator=g)
    mean, var = exact_em_moments(fs, field, interp, form, last_step, n_steps)
    tol_mean, tol_var = gaussian_tolerance(n)
    print(
        f"SDE {form}/{last_step}: mean {x.mean():.5f} vs {mean:.5f}, "
        f"var {x.var():.5f} vs {var:.5f} (rel {x.var().item() / var - 1:+.4f}, tol {tol_var:.4f})"
    )
    assert abs(x.mean().item() - mean) < tol_mean * math.sqrt(var)
    assert abs(x.var().item() / var - 1) < tol_var


@pytest.mark.parametrize("prediction", ["velocity", "score", "noise"])
def test_default_sde_starts_off_the_singular_time_and_samples_the_data_law(prediction):
    # sample_eps=0 (the default) put t0 on t = 0, where the SBDM diffusion of the linear path
    # is infinite (1e8 after the floor): the chains stayed finite but ended with 8x the
    # target's standard deviation. The default now keeps 1e-3 from each singular end.
    interp = LinearInterpolant()
    field = GaussianPathField(interp, prediction)
    fs = FlowSampler(field, mode="sde", prediction=prediction).to(torch.float64)
    assert fs._check_interval() == (1e-3, 1 - 0.04)
    assert FlowSampler(field, prediction=prediction)._check_interval() == (
        (0.0, 1.0) if prediction == "velocity" else (1e-3, 1 - 1e-3)
    )
    n, n_steps = 100_000, 100
    x = fs.sample(dim=1, n_samples=n, n_steps=n_steps, generator=torch.Generator().manual_seed(5))
    mean, var = exact_em_moments(fs, field, interp, "SBDM", "Mean", n_steps)
    tol_mean, tol_var = gaussian_tolerance(n)
    assert abs(x.mean().item() - mean) < tol_mean * math.sqrt(var)
    assert abs(x.var().item() / var - 1) < tol_var
    # ... and that chain ends at the data law N(M, S^2): its "Mean" last step drops the
    # noise 2 D(t1) Delta of the last interval, 1.9% of the variance with SBDM's D = B_v
    # ((1 - t)/t, 0.042 at t1 = 0.96); 0.8.9's D = B_v / sigma (1/t, 1.04 at t1) made that
    # step shrink the variance by 30% (and diverge for narrower laws)
    assert abs(mean - M) < 0.01 and abs(var / S**2 - 1) < 0.025, (mean, var)
    # without a last step the discrete chain from t0 = 1e-3 ends at the data law up to its
    # O(h) bias (0.2% here); from t0 = 0 its variance was 64x
    plain = FlowSampler(field, mode="sde", prediction=prediction, last_step=None)
    assert plain._check_interval() == (1e-3, 1 - 1e-3)
    mean, var = exact_em_moments(plain, field, interp, "SBDM", None, n_steps)
    assert abs(mean - M) < 0.01 and abs(var / S**2 - 1) < 0.05, (mean, var)


def test_sde_last_step_and_interval_details():
    field = GaussianPathField(LinearInterpolant())
    fs = FlowSampler(field, mode="sde", last_step="Tweedie", last_step_size=0.05, sample_eps=0.02)
    assert fs._check_interval() == (0.02, 0.95)
    traj, diag = fs.sample(
        dim=1, n_samples=8, n_steps=10, return_trajectory=True, return_diagnostics=True
    )
    assert traj.shape == (8, 10, 1)
    torch.testing.assert_close(diag["t"][:-1], torch.linspace(0.02, 0.95, 11)[1:-1])
    assert diag["t"][-1].item() == pytest.approx(1.0)
    none = FlowSampler(field, mode="sde", last_step=None, sample_eps=0.02)
    assert none.last_step_size == 0.0 and none._check_interval() == (0.02, 0.98)
    assert FlowSampler(field, integrator="euler").sample(
        x=torch.zeros(2, 1), return_trajectory=True
    ).shape == (2, 50, 1)
    assert fs.sample(x=torch.zeros(2, 1), return_trajectory=True).shape == (2, 250, 1)
    vp = FlowSampler(field, interpolant="vp", sample_eps=0.01)
    assert vp._check_interval() == (0.0, 0.99)


def test_reverse_evaluates_the_field_at_the_correct_time():
    # dx/dt = x + t, x(1) = 0  =>  x(0) = 2/e - 1 = -0.2642 (upstream BUG 3 gave -0.368)
    def field(x, t):
        return x + t[:, None]

    truth = 2 / math.e - 1
    for integrator, tol in ((tight_dopri5(), 1e-6), ("rk4", 1e-6), ("heun", 1e-4)):
        fs = FlowSampler(field, reverse=True, integrator=integrator, dtype=torch.float64)
        out = fs.sample(x=torch.zeros(3, 1, dtype=torch.float64), n_steps=50)
        assert abs(out[0, 0].item() - truth) < tol, (integrator, out[0, 0].item())
        assert abs(out[0, 0].item() - (-math.exp(-1))) > 0.1  # not the BUG-3 value -0.368
    _, diag = FlowSampler(field, reverse=True, integrator="rk4").sample(
        x=torch.zeros(1, 1), n_steps=4, return_diagnostics=True
    )
    torch.testing.assert_close(diag["t"], torch.tensor([0.75, 0.5, 0.25, 0.0]))


def test_reverse_inverts_the_forward_map():
    field = GaussianPathField(CosineInterpolant())
    fwd = FlowSampler(field, interpolant="cosine", integrator="rk4").to(torch.float64)
    rev = FlowSampler(field, interpolant="cosine", integrator="rk4", reverse=True).to(torch.float64)
    x0 = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    data = fwd.sample(x=x0, n_steps=100)
    torch.testing.assert_close(rev.sample(x=data, n_steps=100), x0, atol=1e-6, rtol=0)
    adaptive = FlowSampler(
        field, interpolant="cosine", reverse=True, integrator=tight_dopri5(), dtype=torch.float64
    )
    torch.testing.assert_close(adaptive.sample(x=data, n_steps=100), x0, atol=1e-6, rtol=0)


def test_adaptive_integrator_records_trajectories_at_grid_times():
    field = GaussianPathField(LinearInterpolant())
    integ = Dopri5Integrator(atol=1e-8, rtol=1e-8, dtype=torch.float64)
    fs = FlowSampler(field, integrator=integ, dtype=torch.float64)
    x0 = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    traj, diag = fs.sample(
        x=x0, n_steps=20, thin=4, return_trajectory=True, return_diagnostics=True
    )
    assert traj.shape == (8, 5, 2)
    for k, t in enumerate(torch.linspace(0, 1, 6)[1:].tolist()):
        torch.testing.assert_close(traj[:, k], affine_map(field, x0, 0.0, t), atol=1e-6, rtol=0)
        assert diag["t"][k].item() == pytest.approx(t)


def test_negate_velocity_and_velocity_field_conditioning():
    class Towards(nn.Module):
        def forward(self, x, t, target=None):
            return x - target  # points away from the target, as an EqM field does

    fs = FlowSampler(Towards(), negate_velocity=True, integrator="rk4")
    target = torch.full((4, 2), 1.0)
    out = fs.sample(x=torch.zeros(4, 2), n_steps=20, model_kwargs={"target": target})
    torch.testing.assert_close(out, torch.full((4, 2), 1 - math.exp(-1)), atol=1e-6, rtol=0)


def test_legacy_conditioning_and_removed_keywords():
    class Towards(nn.Module):
        def forward(self, x, t, target=None):
            return target - x

    fs = FlowSampler(Towards(), integrator="euler")
    x0 = torch.zeros(2, 1)
    for key in [k for k in _WARNED if k.startswith("FlowSampler.sample.legacy_model_kwargs")]:
        _WARNED.discard(key)
    with pytest.warns(DeprecationWarning, match="model_kwargs"):
        old = fs.sample(x=x0, n_steps=5, target=torch.ones(2, 1))
    new = fs.sample(x=x0, n_steps=5, model_kwargs={"target": torch.ones(2, 1)})
    torch.testing.assert_close(old, new)
    both = fs.sample(
        x=x0, n_steps=5, target=torch.zeros(2, 1), model_kwargs={"target": torch.ones(2, 1)}
    )
    torch.testing.assert_close(both, new)  # the explicit dict wins
    for kw, hint in [
        ({"num_steps": 5}, "n_steps"),
        ({"method": "dopri5"}, "integrator"),
        ({"atol": 1e-5}, "Dopri5Integrator"),
        ({"shape": (2, 1)}, "n_samples"),
        ({"z": x0}, "x="),
        ({"mode": "sde"}, "constructor"),
    ]:
        with pytest.raises(TypeError, match=hint):
            fs.sample(x=x0, **kw)
    assert not hasattr(fs, "sample_ode") and not hasattr(fs, "sample_sde")


def test_constructor_validation():
    field = GaussianPathField(LinearInterpolant())
    with pytest.raises(ValueError, match="mode"):
        FlowSampler(field, mode="flow")
    with pytest.raises(ValueError, match="prediction"):
        FlowSampler(field, prediction="x0")
    assert FlowSampler(field, prediction=PredictionType.SCORE).prediction is PredictionType.SCORE
    with pytest.raises(ValueError, match="diffusion_form only applies to mode='sde'"):
        FlowSampler(field, diffusion_form="sigma")
    with pytest.raises(ValueError, match="diffusion_form, diffusion_norm only apply to mode"):
        FlowSampler(field, diffusion_form="sigma", diffusion_norm=1.0)
    with pytest.raises(ValueError, match="last_step only applies to mode='sde'"):
        FlowSampler(field, last_step="Euler")
    # None, the SDE's "no last step", is what an ODE does: accepted, as diffusion_form=None
    assert FlowSampler(field, last_step=None).last_step is None
    with pytest.raises(ValueError, match="reverse"):
        FlowSampler(field, mode="sde", reverse=True)
    with pytest.raises(ValueError, match="last_step"):
        FlowSampler(field, mode="sde", last_step="Heun")
    # a score or noise model evaluated at t = 0 throughout gave a wrong law (variance 7.4
    # for a target of 0.3-1.1): negate_velocity is for an EqM velocity field only
    for prediction in ("score", "noise", PredictionType.SCORE):
        with pytest.raises(ValueError, match="negate_velocity=True is for .* velocity"):
            FlowSampler(field, prediction=prediction, negate_velocity=True)
    # the error names the argument, the value and the accepted forms
    with pytest.raises(
        ValueError,
        match=r"^diffusion_form must be one of \['constant', 'SBDM', 'sigma', 'linear', "
        r"'decreasing', 'increasing-decreasing'\], got 'cubic'$",
    ):
        FlowSampler(field, mode="sde", diffusion_form="cubic")

    class AdaptiveEM(EulerMaruyamaIntegrator):  # no built-in SDE integrator is adaptive
        error_weights = (1.0, -1.0)
        order = 1

    with pytest.raises(ValueError, match="fixed-step"):
        FlowSampler(field, mode="sde", integrator=AdaptiveEM())
    with pytest.raises(TypeError, match="SDE"):
        FlowSampler(field, mode="sde", integrator="rk4")
    with pytest.raises(TypeError):
        FlowSampler(field, integrator="leapfrog")
    with pytest.raises(ValueError, match="nope"):
        FlowSampler(field, interpolant="nope")
    with pytest.raises(TypeError):
        FlowSampler(field, interpolant=3)
    with pytest.raises(ValueError, match="sample_eps"):
        FlowSampler(field, sample_eps=-0.1)
    with pytest.raises(TypeError, match="callable"):
        FlowSampler(3)
    with pytest.raises(ValueError, match="shape"):
        FlowSampler(lambda x, t: x[:, :1]).sample(x=torch.zeros(2, 2), n_steps=1)


def test_prior_logp():
    z = torch.randn(5, 2, 3)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(z).reshape(5, -1).sum(1)
    torch.testing.assert_close(FlowSampler.prior_logp(z), ref)


class _Wiggle(nn.Module):
    """An arbitrary smooth field f(x, t) (not a true velocity): the drift identity is algebra."""

    def forward(self, x, t):
        return torch.sin(3 * x) * (1 + t[:, None]) + 0.3 * x.flip(1)


@pytest.mark.parametrize("interpolant", ["linear", "cosine", "vp", "ve"])
@pytest.mark.parametrize("prediction", ["velocity", "score", "noise"])
@pytest.mark.parametrize("form", ["SBDM", "sigma", "linear", "constant"])
def test_sde_drift_table_equals_the_general_drift(interpolant, prediction, form):
    """The per-grid-time table (a f + b x) gives the drift v + D s of the general path."""
    fs = FlowSampler(
        _Wiggle(),
        mode="sde",
        interpolant=interpolant,
        prediction=prediction,
        diffusion_form=form,
        sample_eps=0.02,
        negate_velocity=prediction == "velocity" and form == "sigma",
        dtype=torch.float64,
    )
    x = torch.randn(5, 2, dtype=torch.float64)
    grid = torch.linspace(0.02, 0.9, 7, dtype=torch.float64)
    a, b, d = fs._sde_table(grid)
    general = fs._sde_drift({})
    for i in range(grid.shape[0]):
        t = grid[i].expand(5)  # the grid time, handed to the drift explicitly
        fast = fs._grid_drift({}, a[i], b[i])
        torch.testing.assert_close(fast(x, t), general(x, t), rtol=1e-9, atol=1e-9)
        assert torch.equal(d[i].expand(5, 1), fs._diffusion(x, t))


class _RecordTimes(nn.Module):
    """f(x, t) = -x, recording each t it is called with (one value per call)."""

    def __init__(self):
        super().__init__()
        self.seen: list[float] = []

    def forward(self, x, t):
        assert t.shape == (x.shape[0],) and bool((t == t[0]).all())
        self.seen.append(float(t[0]))
        return -x


@pytest.mark.parametrize(
    "mode,integrator,calls_per_step",
    [("ode", "euler", 1), ("ode", "heun", 2), ("sde", "euler_maruyama", 1), ("sde", "heun", 2)],
)
def test_model_gets_the_grid_times_and_state_is_typed(mode, integrator, calls_per_step):
    """Each step hands the model the grid time explicitly (and the second stage of a
    two-stage method the next grid time); the grid lives in the typed `FlowState`."""
    from torchebm.samplers._flow import FlowState

    field = _RecordTimes()
    kw = {"last_step": None} if mode == "sde" else {}
    fs = FlowSampler(field, mode=mode, integrator=integrator, dtype=torch.float64, **kw)
    n = 5
    out, diag = fs.sample(
        x=torch.ones(3, 2, dtype=torch.float64), n_steps=n, return_diagnostics=True
    )
    t0, t1 = fs._check_interval()
    grid = [t0 + (t1 - t0) * k / n for k in range(n)] + [t1]
    expected = [grid[i + s] for i in range(n) for s in range(calls_per_step)]
    assert field.seen == pytest.approx(expected, abs=1e-12)
    torch.testing.assert_close(diag["t"], torch.tensor(grid[1:], dtype=torch.float64))
    from torchebm.core import SamplerContext

    ctx = SamplerContext(model_kwargs={}, generator=None, n_steps=n, thin=1, event_shape=(2,))
    state = fs.init_state(torch.ones(3, 2, dtype=torch.float64), ctx)
    assert isinstance(state, FlowState) and state.times == pytest.approx(grid)
    assert (state.sde_table is not None) == (mode == "sde")
    assert state.grid_drift == (mode == "sde" and integrator == "euler_maruyama")


def test_model_output_of_another_dtype_is_a_named_error():
    # a float64 output promoted the float32 chains silently (and a float32 one truncated
    # float64 chains); under autocast a half-precision output is what was asked for
    fs = FlowSampler(lambda x, t: -x.double(), integrator="euler")
    with pytest.raises(TypeError, match=r"model\(x, t\) returned dtype torch.float64"):
        fs.sample(dim=2, n_samples=2, n_steps=3)
    fs64 = FlowSampler(lambda x, t: -x.float(), integrator="euler", dtype=torch.float64)
    with pytest.raises(TypeError, match="for a state x of dtype torch.float64"):
        fs64.sample(dim=2, n_samples=2, n_steps=3)
    half = FlowSampler(lambda x, t: (-x).to(torch.bfloat16), integrator="euler")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = half.sample(dim=2, n_samples=2, n_steps=3)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
