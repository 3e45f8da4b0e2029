"""The ``sample()`` contract, run against every sampler (shapes, dtype, generator, thin, errors)."""

from __future__ import annotations

import inspect

import pytest
import torch
from samplers_helpers import FACTORIES, STOCHASTIC, analytic_model, neural_model

from torchebm.core import BaseSampler
from torchebm.core.errors import ConfigurationError, NonFiniteError
from torchebm.samplers import FlowSampler

NAMES = sorted(FACTORIES)


def make(name, model=None, **kw):
    factory, kind = FACTORIES[name]
    return factory(model if model is not None else analytic_model(kind), **kw)


def kind_of(name):
    return FACTORIES[name][1]


@pytest.mark.parametrize("name", NAMES)
def test_signature_contract(name):
    sampler = make(name)
    assert isinstance(sampler, BaseSampler)
    params = list(inspect.signature(sampler.sample).parameters.values())
    first = [p.name for p in params[:8]]
    assert first == [
        "x",
        "dim",
        "n_steps",
        "n_samples",
        "thin",
        "return_trajectory",
        "return_diagnostics",
        "reset_schedulers",
    ]
    kw_only = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    assert {"model_kwargs", "generator", "nan_policy", "compile"} <= kw_only
    assert not any(p.kind is p.VAR_POSITIONAL for p in params)
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    assert has_var_kw == isinstance(sampler, FlowSampler)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_trajectory_and_diagnostics(name):
    sampler = make(name)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 2, generator=g)
    assert sampler.sample(x=x0, n_steps=4).shape == (5, 2)
    assert sampler.sample(dim=(2, 3), n_samples=4, n_steps=3).shape == (4, 2, 3)
    assert sampler.sample(dim=3, n_samples=2, n_steps=2).shape == (2, 3)
    traj, diag = sampler.sample(
        x=x0, n_steps=10, thin=3, return_trajectory=True, return_diagnostics=True
    )
    assert traj.shape == (5, 3, 2)
    assert set(type(sampler).diagnostic_keys) <= set(diag)
    for key, value in diag.items():
        assert value.shape[0] == 3, key
    assert diag["mean"].shape == (3, 2) and diag["var"].shape == (3, 2)
    torch.testing.assert_close(diag["mean"], traj.mean(0))
    torch.testing.assert_close(diag["var"], traj.var(0, unbiased=False).clamp(1e-10, 1e10))
    out, diag = sampler.sample(x=x0, n_steps=6, thin=2, return_diagnostics=True)
    assert out.shape == (5, 2) and all(v.shape[0] == 3 for v in diag.values())


@pytest.mark.parametrize("name", NAMES)
def test_single_chain_diagnostics(name):
    _, diag = make(name).sample(x=torch.ones(1, 2), n_steps=2, return_diagnostics=True)
    assert torch.equal(diag["var"], torch.zeros(2, 2))


@pytest.mark.parametrize("name", NAMES)
def test_dtype_and_device_follow_sampler(name):
    kind = kind_of(name)
    if kind == "energy":
        sampler = make(name, analytic_model(kind, dtype=torch.float64), dtype=torch.float64)
    else:
        sampler = make(name, analytic_model(kind)).to(torch.float64)
    assert sampler.dtype == torch.float64
    out = sampler.sample(x=torch.randn(3, 2), n_steps=2)  # float32 input is cast
    assert out.dtype == torch.float64 and out.device.type == "cpu"
    assert sampler.sample(dim=2, n_samples=3, n_steps=2).dtype == torch.float64
    # a parametric model's dtype wins, and .to() moves the whole sampler
    neural = make(name, neural_model(kind)).to(torch.float64)
    assert neural.sample(x=torch.randn(3, 2), n_steps=2).dtype == torch.float64


@pytest.mark.parametrize("name", NAMES)
def test_float16_chains_and_diagnostics(name):
    """A sampler moved to float16 returns float16 chains and diagnostics, the variance that
    of its trajectory (float64 reference) capped at float16's largest value: the 1e10 cap
    raised a RuntimeError in float16 (AIS's HMC transition with it). RMHMC needs a Cholesky
    factorisation, which torch lacks in float16: it says so."""
    sampler = make(name).to(torch.float16)
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(0)).half()
    kw = {"return_trajectory": True, "return_diagnostics": True}
    if name == "rmhmc":
        with pytest.raises(ConfigurationError, match="float32 or float64 chains.*float16"):
            sampler.sample(x=x0, n_steps=4, **kw)
        return
    traj, diag = sampler.sample(x=x0, n_steps=4, generator=torch.Generator().manual_seed(1), **kw)
    assert traj.dtype == diag["var"].dtype == diag["mean"].dtype == torch.float16
    big = torch.finfo(torch.float16).max
    ref = traj.double().var(0, unbiased=False).clamp(1e-10, big)
    # float16 rounding of the result: 2^-11 relative; 4 of them
    torch.testing.assert_close(diag["var"].double(), ref, rtol=2**-9, atol=0.0)
    if name == "flow_sde":  # its first kept state spreads past float16's range: the cap
        assert ref.max() == big and bool((traj.double().var(0, unbiased=False) > big).any())


@pytest.mark.parametrize("name", NAMES)
def test_generator_determinism_and_global_rng_untouched(name):
    sampler = make(name)
    state = torch.random.get_rng_state()
    a = sampler.sample(dim=2, n_samples=6, n_steps=5, generator=torch.Generator().manual_seed(3))
    b = sampler.sample(dim=2, n_samples=6, n_steps=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b)
    c = sampler.sample(dim=2, n_samples=6, n_steps=5, generator=torch.Generator().manual_seed(4))
    assert not torch.allclose(a, c)
    if name in STOCHASTIC:  # the noise itself comes from the generator, not only the start
        x0 = torch.zeros(6, 2)
        d = sampler.sample(x=x0, n_steps=5, generator=torch.Generator().manual_seed(1))
        e = sampler.sample(x=x0, n_steps=5, generator=torch.Generator().manual_seed(2))
        assert not torch.allclose(d, e)


@pytest.mark.parametrize("name", NAMES)
def test_global_rng_without_generator_is_reproducible(name):
    sampler = make(name)
    torch.manual_seed(11)
    a = sampler.sample(dim=2, n_samples=4, n_steps=3)
    torch.manual_seed(11)
    b = sampler.sample(dim=2, n_samples=4, n_steps=3)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_thin_records_the_state_after_every_thin_th_step(name):
    sampler = make(name)
    x0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    traj = sampler.sample(
        x=x0, n_steps=9, thin=3, return_trajectory=True, generator=torch.Generator().manual_seed(5)
    )
    final = sampler.sample(x=x0, n_steps=9, generator=torch.Generator().manual_seed(5))
    # adaptive solves between recorded times take different internal steps
    tol = 1e-3 if name == "flow_ode_adaptive" else 1e-6
    torch.testing.assert_close(traj[:, -1], final, atol=tol, rtol=tol)
    if kind_of(name) == "energy":  # a prefix run uses the same random stream
        for k in range(3):
            prefix = sampler.sample(
                x=x0, n_steps=3 * (k + 1), generator=torch.Generator().manual_seed(5)
            )
            torch.testing.assert_close(traj[:, k], prefix)


@pytest.mark.parametrize("name", NAMES)
def test_no_gradient_leak_and_input_untouched(name):
    kind = kind_of(name)
    model = neural_model(kind)
    sampler = make(name, model)
    x0 = torch.randn(4, 2, requires_grad=True)
    before = x0.detach().clone()
    out, diag = sampler.sample(x=x0, n_steps=3, return_diagnostics=True)
    assert not out.requires_grad and not any(v.requires_grad for v in diag.values())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x0.detach(), before) and x0.grad is None


@pytest.mark.parametrize("name", NAMES)
def test_ctor_n_steps_is_the_default(name):
    sampler = make(name, n_steps=3)
    assert sampler.n_steps == 3
    traj = sampler.sample(x=torch.zeros(2, 2), return_trajectory=True)
    assert traj.shape == (2, 3, 2)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_raises_clear_errors(name):
    sampler = make(name)
    x0 = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="n_steps"):
        sampler.sample(x=x0, n_steps=0)
    with pytest.raises(ValueError, match="thin"):
        sampler.sample(x=x0, n_steps=4, thin=0)
    with pytest.raises(ValueError, match="thin"):
        sampler.sample(x=x0, n_steps=4, thin=5)
    with pytest.raises(ValueError, match="dim"):
        sampler.sample(x=x0, dim=3, n_steps=2)
    with pytest.raises(ValueError, match="n_samples"):
        sampler.sample(x=x0, n_samples=4, n_steps=2)
    with pytest.raises(ValueError, match="x must have at least 2"):
        sampler.sample(x=torch.zeros(3), n_steps=2)
    with pytest.raises(TypeError, match=r"x must have a real \(not complex\) dtype.*complex64"):
        sampler.sample(x=torch.zeros(3, 2, dtype=torch.complex64), n_steps=2)
    with pytest.raises(ValueError, match="dim"):
        sampler.sample(dim=0, n_samples=2, n_steps=2)
    with pytest.raises(ValueError, match="nan_policy"):
        sampler.sample(x=x0, n_steps=2, nan_policy="ignore")
    with pytest.raises(TypeError, match="generator"):
        sampler.sample(x=x0, n_steps=2, generator=0)
    with pytest.raises(TypeError, match="model_kwargs"):
        sampler.sample(x=x0, n_steps=2, model_kwargs=[1])
    bad = x0.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"batch indices \[1\]"):
        sampler.sample(x=bad, n_steps=2)
    if kind_of(name) == "energy":
        for bad_step in (0.0, -0.1):
            with pytest.raises(ValueError, match="step_size"):
                make(name, step_size=bad_step)


@pytest.mark.parametrize("name", ["langevin", "hmc", "gd", "nesterov", "flow_ode"])
def test_model_kwargs_reach_the_model(name):
    from torch import nn

    from torchebm.core import BaseModel

    class Shifted(BaseModel):
        def forward(self, x, shift=None):
            return 0.5 * (x - shift).square().sum(-1)

    class ShiftField(nn.Module):
        def forward(self, x, t, shift=None):
            return shift - x

    kind = kind_of(name)
    sampler = make(name, Shifted() if kind == "energy" else ShiftField())
    shift = torch.full((64, 2), 3.0)
    out = sampler.sample(x=torch.zeros(64, 2), n_steps=60, model_kwargs={"shift": shift})
    assert (out.mean(0) - 3.0).abs().max() < 1.5  # pulled towards the shift, not to 0
    with pytest.raises(TypeError):
        sampler.sample(x=torch.zeros(2, 2), n_steps=1, model_kwargs={"nope": 1})


@pytest.mark.parametrize("name", ["langevin", "hmc", "gd", "nesterov", "flow_ode"])
def test_y_is_the_model_kwargs_shorthand(name):
    """torchebm 0.8.9's ``sample(..., y=y)`` means ``model_kwargs={"y": y}``, no warning."""
    import warnings

    from torch import nn

    from torchebm.core import BaseModel
    from torchebm.core.errors import ConfigurationError

    class Shifted(BaseModel):
        def forward(self, x, y=None):
            return 0.5 * (x - y[:, None].float()).square().sum(-1)

    class ShiftField(nn.Module):
        def forward(self, x, t, y=None):
            return y[:, None].float() - x

    sampler = make(name, Shifted() if kind_of(name) == "energy" else ShiftField())
    y = torch.arange(8) % 3
    x0 = torch.zeros(8, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short = sampler.sample(x=x0, n_steps=5, y=y, generator=torch.Generator().manual_seed(0))
    full = sampler.sample(
        x=x0, n_steps=5, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(short, full, rtol=0, atol=0)
    assert not torch.equal(
        short, sampler.sample(x=x0, n_steps=5, y=y + 1, generator=torch.Generator().manual_seed(0))
    )
    with pytest.raises(ConfigurationError, match="y= or in model_kwargs"):
        sampler.sample(x=x0, n_steps=1, y=y, model_kwargs={"y": y})
