"""FlowSampler SDE time interval: ``last_step_size`` in [0, 1) and ``t0 < t1`` at every call.

Before the fix ``last_step_size=1.0`` gave the interval (0.01, 0.0) and ``2.0`` gave
(0.01, -1.0): the grid ran backwards and the chains blew up (|x| ~ 2e9 and ~ 1.8e38) without
an error.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.core import BaseInterpolant, LinearScheduler
from torchebm.core.errors import ConfigurationError
from torchebm.interpolants import LinearInterpolant
from torchebm.samplers import FlowSampler

F64 = torch.float64


def field(x, t):
    return -x


@pytest.mark.parametrize("value", [1.0, 2.0, 1, -0.1, math.inf, math.nan])
@pytest.mark.parametrize("last_step", ["Mean", None])
def test_constructor_rejects_last_step_size_outside_0_1(value, last_step):
    with pytest.raises(ConfigurationError) as err:
        FlowSampler(field, mode="sde", sample_eps=0.01, last_step=last_step, last_step_size=value)
    msg = str(err.value)
    assert "last_step_size" in msg and repr(value) in msg
    if math.isfinite(value):
        assert "[0, 1)" in msg


def test_constructor_rejects_a_non_number_last_step_size():
    with pytest.raises(TypeError, match="last_step_size"):
        FlowSampler(field, mode="sde", last_step_size="0.1")


@pytest.mark.parametrize("eps,delta", [(0.4, 0.6), (0.4, 0.7), (0.3, 0.99)])
def test_constructor_rejects_sample_eps_plus_last_step_size_at_least_1(eps, delta):
    with pytest.raises(ConfigurationError) as err:
        FlowSampler(field, mode="sde", sample_eps=eps, last_step_size=delta)
    msg = str(err.value)
    assert f"sample_eps={eps!r}" in msg and f"last_step_size={delta!r}" in msg
    assert "t0 < t1" in msg


def test_assignment_is_checked_and_a_failed_one_changes_nothing():
    fs = FlowSampler(field, mode="sde", sample_eps=0.4, last_step_size=0.5)
    for bad in (1.0, 2.0, -0.5, math.nan):
        with pytest.raises(ConfigurationError, match="last_step_size"):
            fs.last_step_size = bad
        assert fs.last_step_size == 0.5
    fs.last_step_size = 0.2
    assert fs.last_step_size == 0.2 and fs._check_interval() == (0.4, 0.8)


def test_sample_checks_the_combination_assigned_after_construction():
    fs = FlowSampler(field, mode="sde", sample_eps=0.4, last_step_size=0.5)
    fs.last_step_size = 0.7  # in [0, 1) alone, but t1 = 0.3 < t0 = 0.4
    with pytest.raises(ConfigurationError) as err:
        fs.sample(dim=2, n_samples=3, n_steps=5)
    msg = str(err.value)
    assert "sample_eps=0.4" in msg and "last_step_size=0.7" in msg and "(0.4, 0.3)" in msg


def test_sample_checks_the_scheduled_sample_eps_it_uses():
    # sample_eps 0.1 -> 0.9 over two steps: the first call builds its grid at 0.1; a second
    # call that keeps the schedule's position would integrate over (0.9, 0.7)
    fs = FlowSampler(field, mode="sde", sample_eps=LinearScheduler(0.1, 0.9, 2), last_step_size=0.3)
    x, diag = fs.sample(
        dim=2, n_samples=3, n_steps=5, reset_schedulers=False, return_diagnostics=True
    )
    assert bool(x.isfinite().all()) and diag["t"][0].item() == pytest.approx(0.22)
    # the schedule now reads 0.9, outside [0, 0.5): reading it, or a call that would use it,
    # names the parameter, its value and its schedule
    rule = r"sample_eps must be in \[0, 0.5\), got 0.9 from its LinearScheduler"
    with pytest.raises(ConfigurationError, match=rule):
        _ = fs.sample_eps
    with pytest.raises(ConfigurationError, match=rule):
        fs.sample(dim=2, n_samples=3, n_steps=5, reset_schedulers=False)
    # reset (the default) rewinds the schedule to 0.1: valid again
    assert fs.sample(dim=2, n_samples=3, n_steps=5).shape == (3, 2)


def _hand_sde(x, eps, delta, n_steps, generator):
    """Euler-Maruyama for dx = (v + D s) dt + sqrt(2 D) dW with v = -x on the linear path,
    SBDM diffusion, then the "Mean" last step: written from the interpolant's public API."""
    interp = LinearInterpolant()
    t0, t1 = eps, 1.0 - delta
    times = [t0 + (t1 - t0) * k / n_steps for k in range(n_steps)] + [t1]

    def drift_and_d(x, t):
        tb = torch.full((x.shape[0],), t, dtype=x.dtype)
        v = -x
        s = interp.velocity_to_score(v, x, tb)
        d = interp.compute_diffusion(x, tb, "SBDM", 1.0)
        return v + d * s, d

    for k in range(n_steps):
        h = times[k + 1] - times[k]
        f, d = drift_and_d(x, times[k])
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x + h * f + torch.sqrt(2 * d * h) * xi
    f, _ = drift_and_d(x, t1)
    return x + delta * f


@pytest.mark.parametrize("delta", [0.04, 0.5, 0.98])
def test_valid_last_step_sizes_give_the_hand_written_chain(delta):
    eps, n_steps = 0.01, 20
    fs = FlowSampler(field, mode="sde", sample_eps=eps, last_step_size=delta).to(F64)
    x0 = torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    out, diag = fs.sample(
        x=x0,
        n_steps=n_steps,
        return_diagnostics=True,
        generator=torch.Generator().manual_seed(2),
    )
    ref = _hand_sde(x0, eps, delta, n_steps, torch.Generator().manual_seed(2))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    t = diag["t"]
    assert bool((t[1:] > t[:-1]).all())  # the grid runs forwards
    assert t[-1].item() == pytest.approx(1.0)  # t1 + last_step_size


def test_the_sde_loop_does_not_read_its_diffusion_tensors_back(monkeypatch):
    """Each step hands the integrator D(t_i) as a 0-d tensor; the integrator's entry check
    of a tensor diffusion is off in the sampler's loop: it adds no host read (``bool`` of a
    tensor) to the loop, which does as many as with the check removed."""
    from torchebm.integrators import _base_runge_kutta as rk

    fs = FlowSampler(field, mode="sde", sample_eps=0.01)
    reads: list[int] = []
    original = torch.Tensor.__bool__

    def counting(self):
        reads.append(1)
        return original(self)

    def host_reads() -> int:
        reads.clear()
        out = fs.sample(dim=2, n_samples=4, n_steps=10, generator=torch.Generator().manual_seed(0))
        assert bool(out.isfinite().all())
        return len(reads) - 1  # the assert's own read

    monkeypatch.setattr(torch.Tensor, "__bool__", counting)
    with_check = host_reads()
    monkeypatch.setattr(rk, "_check_diffusion", lambda d: d)
    assert with_check == host_reads()
    monkeypatch.undo()
    with pytest.raises(ConfigurationError):  # outside a loop the same tensor check is on
        rk._check_diffusion(torch.tensor(-1.0))


class _UserLinear(BaseInterpolant):
    """The linear path written by a user: alpha = t, sigma = 1 - t (singular ends 0 and 1)."""

    def compute_alpha_t(self, t):
        return t, torch.ones_like(t)

    def compute_sigma_t(self, t):
        return 1 - t, -torch.ones_like(t)


class _UserFinite(BaseInterpolant):
    """A path with no singular end: alpha = (1 + t) / 2, sigma = 1 - t / 2."""

    def compute_alpha_t(self, t):
        return (1 + t) / 2, torch.full_like(t, 0.5)

    def compute_sigma_t(self, t):
        return 1 - t / 2, torch.full_like(t, -0.5)


def _exact_linear_velocity(mean, std):
    """Velocity of the linear path from N(0, 1) to N(mean, std^2), in closed form."""

    def velocity(x, t):
        t = t.view(-1, 1)
        var = t**2 * std**2 + (1 - t) ** 2
        return mean + (t * std**2 - (1 - t)) / var * (x - t * mean)

    return velocity


@pytest.mark.parametrize(
    "mode,prediction", [("sde", "velocity"), ("ode", "score"), ("ode", "velocity")]
)
@pytest.mark.parametrize("eps", [0.0, 0.02])
def test_a_user_path_with_singular_ends_keeps_the_linear_paths_interval(mode, prediction, eps):
    # before: (0, 1) for any user path; the SDE started at t = 0 where the SBDM diffusion is
    # 1/alpha = 1e8, and sample_eps was ignored
    built_in = FlowSampler(field, mode=mode, prediction=prediction, sample_eps=eps)
    user = FlowSampler(
        field, mode=mode, prediction=prediction, sample_eps=eps, interpolant=_UserLinear()
    )
    assert user._check_interval() == built_in._check_interval()
    finite = FlowSampler(
        field, mode=mode, prediction=prediction, sample_eps=eps, interpolant=_UserFinite()
    )
    last = finite.last_step_size if mode == "sde" else 0.0
    assert finite._check_interval() == (0.0, 1.0 - last)


@pytest.mark.parametrize("seed", [0, 1])
def test_sde_on_a_user_linear_path_reaches_the_target_law(seed):
    n, mean, std = 20000, 1.5, 0.5
    fs = FlowSampler(
        _exact_linear_velocity(mean, std), mode="sde", interpolant=_UserLinear(), dtype=F64
    )
    x = fs.sample(dim=1, n_samples=n, n_steps=100, generator=torch.Generator().manual_seed(seed))
    # before: std 40.9 (seed 0); 4 standard errors of each moment + 0.006 for the 100-step
    # chain's own bias (the built-in path: std 0.497 and 0.491): a 5 % error fails
    assert abs(float(x.mean()) - mean) < 4 * std / math.sqrt(n) + 0.006
    assert abs(float(x.std()) - std) < 4 * std / math.sqrt(2 * n) + 0.006


@pytest.mark.parametrize("sample_eps", [1e-3, 1e-8, 5e-9])
def test_a_noise_prediction_near_the_data_end_is_the_velocity_prediction(sample_eps):
    # the score of a noise prediction was noise / (1e-8 - sigma): a division by ~0 at
    # sigma = 1e-8 and the wrong sign below (variance 0.61 of the data's at sample_eps=1e-8)
    s2 = 0.25  # data N(0, s2 I), linear path x_t = t x1 + (1 - t) x0: exact fields

    def noise(x, t):
        t = t.reshape(-1, 1).to(x.dtype)
        return (1 - t) / (t**2 * s2 + (1 - t) ** 2) * x

    def velocity(x, t):
        t = t.reshape(-1, 1).to(x.dtype)
        return (t * s2 - (1 - t)) / (t**2 * s2 + (1 - t) ** 2) * x

    x0 = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = {}
    for prediction, field in (("noise", noise), ("velocity", velocity)):
        sampler = FlowSampler(
            field, interpolant="linear", prediction=prediction, sample_eps=sample_eps,
            integrator="heun", dtype=torch.float64,
        )  # fmt: skip
        out[prediction] = sampler.sample(x=x0, n_steps=20)
    # (1e-4: the score -> velocity conversion floors alpha(0) = 0 at the first step)
    torch.testing.assert_close(out["noise"], out["velocity"], rtol=1e-4, atol=1e-4)
