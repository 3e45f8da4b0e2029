"""SDE integrators check ``diffusion`` as they check ``noise_scale``: $D \\ge 0$ and finite.

Before the fix a float -1.0 raised ``ValueError: math domain error`` (naming nothing) and a
negative or NaN tensor, NaN float or negative callable silently gave NaN states.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.core.errors import ConfigurationError
from torchebm.integrators import EulerMaruyamaIntegrator, HeunIntegrator
from torchebm.integrators._checked import checked_inputs

F64 = torch.float64


def drift(x, t):
    return -x


def _call(how, integ, x, **kw):
    if how == "step":
        return integ.step({"x": x}, 0.1, drift=drift, **kw)["x"]
    return integ.integrate({"x": x}, 0.1, 5, drift=drift, **kw)["x"]


@pytest.mark.parametrize("how", ["step", "integrate"])
@pytest.mark.parametrize("value", [-1.0, -1, math.nan, math.inf, -math.inf])
def test_a_bad_number_is_rejected_like_noise_scale(how, value):
    x = torch.zeros(3, 2)
    with pytest.raises(ConfigurationError) as err:
        _call(how, EulerMaruyamaIntegrator(), x, diffusion=value)
    assert str(err.value) == f"diffusion must be non-negative and finite, got {value!r}"
    with pytest.raises(ConfigurationError) as ns_err:  # the same message shape
        _call(how, EulerMaruyamaIntegrator(), x, noise_scale=-1.0)
    assert str(ns_err.value) == "noise_scale must be non-negative and finite, got -1.0"


@pytest.mark.parametrize("how", ["step", "integrate"])
@pytest.mark.parametrize(
    "value,shown,at",
    [
        (torch.tensor(-1.0), "[-1.0]", "[0]"),
        (torch.tensor(math.nan), "[nan]", "[0]"),
        (torch.tensor([0.5, -2.0, 1.0]), "[-2.0]", "[1]"),
        (torch.tensor([[0.5], [math.inf], [math.nan]]), "[inf, nan]", "[1, 2]"),
    ],
)
def test_a_bad_constant_tensor_is_rejected_at_entry(how, value, shown, at):
    with pytest.raises(ConfigurationError) as err:
        _call(how, HeunIntegrator(), torch.zeros(3, 2), diffusion=value)
    msg = str(err.value)
    assert msg.startswith("diffusion must hold non-negative finite values")
    assert f"got {shown} at flat indices {at}" in msg and str(tuple(value.shape)) in msg


@pytest.mark.parametrize("how", ["step", "integrate"])
def test_a_callable_returning_a_negative_number_is_rejected(how):
    with pytest.raises(ConfigurationError, match=r"diffusion\(x, t\) must return .*-0\.5"):
        _call(how, EulerMaruyamaIntegrator(), torch.zeros(3, 2), diffusion=lambda x, t: -0.5)


def test_under_checked_inputs_tensor_values_are_not_read_back():
    """Under `checked_inputs` (a sampler's loop) neither a constant tensor nor a callable's
    output is synced to the host: invalid values give NaN states, which the NaN policy
    reports."""
    em, x = EulerMaruyamaIntegrator(), torch.zeros(3, 2)
    with checked_inputs():
        y = _call("step", em, x, diffusion=torch.tensor(-1.0))
        assert bool(y.isnan().all())
        for how in ("step", "integrate"):
            y = _call(how, em, x, diffusion=lambda x, t: -torch.ones(x.shape[0]))
            assert bool(y.isnan().all())


@pytest.mark.parametrize("how", ["step", "integrate"])
@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_a_callable_returning_a_bad_tensor_is_rejected(how, bad):
    # before the fix: NaN states and no error
    def diffusion(x, t):  # valid at t = 0, bad from t = 0.2 on (the third step of 5)
        return torch.where(t > 0.15, bad, 0.5)

    em = EulerMaruyamaIntegrator(dtype=F64)
    x = torch.zeros(3, 2, dtype=F64)
    if how == "integrate":
        with pytest.raises(ConfigurationError) as err:
            _call(how, em, x, diffusion=diffusion)
        msg = str(err.value)
        assert msg.startswith("diffusion(x, t) must return non-negative finite values")
        assert f"[{bad!r}, {bad!r}] at step 2 (t=0.2) of the 5 steps" in msg
    else:
        with pytest.raises(ConfigurationError, match=r"diffusion\(x, t\) must hold non-neg"):
            em.step({"x": x}, 0.1, drift=drift, diffusion=diffusion, t=0.2)
        em.step({"x": x}, 0.1, drift=drift, diffusion=diffusion, t=0.0)  # valid there


def test_a_callable_diffusion_is_read_back_once_per_integrate_call(monkeypatch):
    """The per-step values stay on the device: the host reads of `integrate` do not grow
    with the number of steps (one batch of reads after the loop)."""
    from _support.host_reads import count_host_reads

    em, x = EulerMaruyamaIntegrator(), torch.zeros(3, 2)
    diffusion = lambda x, t: torch.full((x.shape[0],), 0.5)  # noqa: E731
    calls = count_host_reads(monkeypatch)
    reads = []
    for n in (2, 20):
        calls["n"] = 0
        em.integrate({"x": x}, 0.1, n, drift=drift, diffusion=diffusion)
        reads.append(calls["n"])
    assert reads[0] == reads[1], reads


# ---------------------------------------------------------------- valid values: unchanged
VALID = {
    "float": (0.3, 0.3),
    "int zero": (0, 0.0),
    "0-d tensor": (torch.tensor(0.3, dtype=F64), 0.3),
    "(B,) tensor": (torch.tensor([0.0, 0.3, 1.2], dtype=F64), [[0.0], [0.3], [1.2]]),
    "callable": (lambda x, t: torch.full((x.shape[0],), 0.3, dtype=F64), 0.3),
    "callable float": (lambda x, t: 0.3, 0.3),
}


@pytest.mark.parametrize("name", list(VALID))
def test_valid_diffusion_step_equals_the_hand_written_update(name):
    diffusion, d = VALID[name]
    d = torch.as_tensor(d, dtype=F64)
    x = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    xi = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    h = 0.05
    y = EulerMaruyamaIntegrator(dtype=F64).step(
        {"x": x}, h, drift=drift, diffusion=diffusion, noise=xi
    )["x"]
    torch.testing.assert_close(y, x - h * x + torch.sqrt(2 * d * h) * xi, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(VALID))
def test_valid_diffusion_integrate_equals_the_hand_written_loop(name):
    diffusion, d = VALID[name]
    d = torch.as_tensor(d, dtype=F64)
    x0 = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    h, n = 0.05, 6
    y = EulerMaruyamaIntegrator(dtype=F64).integrate(
        {"x": x0},
        h,
        n,
        drift=drift,
        diffusion=diffusion,
        generator=torch.Generator().manual_seed(3),
    )["x"]
    g, x = torch.Generator().manual_seed(3), x0
    for _ in range(n):
        xi = torch.randn(x.shape, generator=g, dtype=F64)
        x = x - h * x + torch.sqrt(2 * d * h) * xi
    torch.testing.assert_close(y, x, rtol=1e-12, atol=1e-12)


def test_a_per_dimension_diffusion_broadcasts_and_a_per_sample_one_scales_rows():
    # (D,) with B != D broadcasts over the event; (B,) is one value per sample; a shape that
    # is neither is named instead of a broadcasting error
    em, h = EulerMaruyamaIntegrator(), 0.1
    drift = lambda x, t: 0 * x  # noqa: E731
    per_dim = torch.tensor([1.0, 4.0])
    y = em.step({"x": torch.zeros(3, 2)}, h, drift=drift, diffusion=per_dim, noise=torch.ones(3, 2))
    torch.testing.assert_close(y["x"], (2 * h * per_dim).sqrt().expand(3, 2))
    per_sample = torch.tensor([1.0, 4.0, 9.0])
    y = em.step(
        {"x": torch.zeros(3, 2)}, h, drift=drift, diffusion=per_sample, noise=torch.ones(3, 2)
    )
    torch.testing.assert_close(y["x"], (2 * h * per_sample).sqrt()[:, None].expand(3, 2))
    from torchebm.core.errors import ShapeError

    with pytest.raises(ShapeError, match=r"diffusion/noise_scale of shape \(5,\)"):
        em.step({"x": torch.zeros(3, 2)}, h, drift=drift, diffusion=torch.ones(5))


def test_adaptive_error_control_reads_no_graph():
    # the step-size controller's host reads detach: no "requires_grad to a scalar" warning,
    # and the solution still differentiates in the drift's parameter (d/dth e^{-th} at th=1)
    import warnings

    from torchebm.integrators import Dopri5Integrator

    th = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    x0 = {"x": torch.ones(2, 1, dtype=torch.float64)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = Dopri5Integrator(rtol=1e-8, atol=1e-10).integrate(
            x0, 0.1, 10, drift=lambda x, t: -th * x
        )
    (g,) = torch.autograd.grad(out["x"].sum(), th)
    torch.testing.assert_close(g, torch.tensor(-2 * math.exp(-1.0), dtype=torch.float64))


@pytest.mark.parametrize("how", ["step", "integrate"])
def test_a_negative_tensor_noise_scale_is_rejected_like_a_number(how):
    x = torch.zeros(3, 2)
    bad = torch.tensor([0.5, -2.0, 1.0])
    with pytest.raises(ConfigurationError, match=r"noise_scale must hold non-negative.*\[-2.0\]"):
        _call(how, EulerMaruyamaIntegrator(), x, noise_scale=bad)
    with checked_inputs():  # a sampler's loop: no host read, sigma enters squared
        out = _call(how, EulerMaruyamaIntegrator(), x, noise_scale=bad)
    assert torch.isfinite(out).all()
    good = _call(how, EulerMaruyamaIntegrator(), x, noise_scale=bad.abs())
    assert good.shape == x.shape


@pytest.mark.parametrize("shape", [(3, 3), (4, 2, 3, 4)])
def test_a_1d_diffusion_as_long_as_the_batch_is_per_sample_also_when_the_last_dim_is(shape):
    # the documented precedence, against hand-written updates: a (B,) tensor is one value per
    # sample even when B equals the last dimension; (1, ..., 1, D) is one per feature
    em, h, b = EulerMaruyamaIntegrator(), 0.1, shape[0]
    x, xi = torch.zeros(shape), torch.ones(shape)
    drift = lambda x, t: 0 * x  # noqa: E731
    d = torch.arange(1.0, b + 1)
    for kw in ({"diffusion": d}, {"noise_scale": d.sqrt()}):
        y = em.step({"x": x}, h, drift=drift, noise=xi, **kw)["x"]
        for i in range(b):
            torch.testing.assert_close(y[i], torch.full(shape[1:], (2 * h * d[i]).sqrt().item()))
    ones = [1] * (len(shape) - 1)
    y = em.step({"x": x}, h, drift=drift, noise=xi, diffusion=d.reshape(*ones, b))["x"]
    for j in range(b):
        torch.testing.assert_close(y[..., j], torch.full(shape[:-1], (2 * h * d[j]).sqrt().item()))
