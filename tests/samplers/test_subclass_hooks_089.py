"""Sampler subclasses that override the gradient or energy hook (0.8.9's ``_model_gradient``
/ ``_model_energy`` or this version's ``model_gradient`` / ``model_energy``): every step uses
the override, on every path (closed-form models, the whole-chain kernel, HMC's fused step);
a 0.8.9 hook that nothing calls any more is reported when the subclass is defined."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
from _support.hooks_089 import assert_warns_when_defined

from torchebm import samplers
from torchebm.core import BaseModel, GaussianModel, HarmonicModel


class _Quadratic(BaseModel):
    def forward(self, x):
        return 0.5 * x.pow(2).sum(-1)


MODELS = {
    "gaussian": lambda: GaussianModel(torch.zeros(2), torch.eye(2)),  # closed form, fast path
    "harmonic": lambda: HarmonicModel(),  # a model the whole-chain kernel supports
    "autograd": _Quadratic,
}
SAMPLERS = {  # class, options (negligible noise: the chains move by their gradient only)
    "langevin": (samplers.LangevinDynamics, {"step_size": 0.1, "noise_scale": 1e-12}),
    "gd": (samplers.GradientDescentSampler, {"step_size": 0.1}),
    "nesterov": (samplers.NesterovSampler, {"step_size": 0.1}),
}


def _frozen(cls, name):
    """A subclass of ``cls`` whose gradient hook ``name`` returns zeros (and counts calls)."""

    def gradient(self, x, model_kwargs=None):
        type(self).calls += 1
        return torch.zeros_like(x)

    return type(f"Frozen{cls.__name__}", (cls,), {"calls": 0, name: gradient})


@pytest.mark.parametrize("hook", ["_model_gradient", "model_gradient"])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("sampler", ["langevin", "gd", "nesterov"])
def test_gradient_override_drives_every_step(sampler, model, hook):
    """With zero gradients (and negligible noise) the chains stay where they started: the
    library's own gradient would move them to the minimum at 0 (0.9^20 of the start)."""
    base, options = SAMPLERS[sampler]
    cls = _frozen(base, hook)
    x0 = torch.full((4, 2), 3.0)
    out = cls(MODELS[model](), **options).sample(x=x0, n_steps=20)
    assert cls.calls >= 20
    torch.testing.assert_close(out, x0, rtol=0.0, atol=1e-9)


@pytest.mark.parametrize("hook", ["_model_gradient", "model_gradient"])
@pytest.mark.parametrize("model", list(MODELS))
def test_hmc_gradient_override_drives_the_leapfrog(model, hook):
    """Zero forces: a trajectory moves x along the straight line x + L h p and keeps p, so H
    changes by E(x') - E(x) only: from x = 0 under E = |x|^2 / 2 a chain accepts with
    probability exp(-(L h)^2 |p|^2 / 2), 1 / (1 + (L h)^2) = 0.917 on average in 2-D (the
    library's gradient would keep p from staying constant)."""
    cls = _frozen(samplers.HamiltonianMonteCarlo, hook)
    s = cls(MODELS[model](), step_size=0.1, n_leapfrog_steps=3)
    n, x0 = 4000, torch.zeros(4000, 2)
    out = s.sample(x=x0, n_steps=1, generator=torch.Generator().manual_seed(0))
    assert cls.calls >= 1
    line = x0 + 3 * 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    moved = (out - x0).abs().amax(1) > 0
    torch.testing.assert_close(out[moved], line[moved], rtol=0.0, atol=1e-6)
    rate, expected = moved.double().mean().item(), 1 / (1 + 0.3**2)
    assert abs(rate - expected) < 5 * (expected * (1 - expected) / n) ** 0.5


def test_hmc_energy_override_decides_the_metropolis_test():
    """0.8.9's ``_model_energy`` override: an energy that is infinite away from the start
    makes every proposal a rejection (the library's would accept most)."""

    class Walled(samplers.HamiltonianMonteCarlo):
        calls = 0

        def _model_energy(self, x, model_kwargs=None):
            type(self).calls += 1
            return torch.where(x.abs().amax(1) < 1e-12, 0.0, torch.inf)

    x0 = torch.zeros(64, 2)
    s = Walled(GaussianModel(torch.zeros(2), torch.eye(2)), step_size=0.1, n_leapfrog_steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the chains never move: the sampler says so
        out = s.sample(x=x0, n_steps=5, generator=torch.Generator().manual_seed(1))
    assert Walled.calls >= 5
    assert torch.equal(out, x0)


RETIRED = [
    (samplers.HamiltonianMonteCarlo, "_initialize_momentum"),
    (samplers.HamiltonianMonteCarlo, "_compute_kinetic_energy"),
    (samplers.RiemannianManifoldHMC, "_kinetic_energy"),
    (samplers.RiemannianManifoldHMC, "_metric_chol"),
    (samplers.FlowSampler, "_get_drift"),
    (samplers.FlowSampler, "_sde_dynamics"),
    (samplers.FlowSampler, "_record_stats"),
]


@pytest.mark.parametrize("base, name", RETIRED)
def test_overriding_a_retired_0_8_9_hook_warns_at_the_class_definition(base, name):
    assert_warns_when_defined(base, name)


def test_a_subclass_with_current_hooks_only_is_not_warned():
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        class Mine(samplers.HamiltonianMonteCarlo):
            def step(self, state, ctx):
                return super().step(state, ctx)

        class MyFlow(samplers.FlowSampler):
            pass

    assert Mine.model_gradient is samplers.HamiltonianMonteCarlo.model_gradient


def test_gradient_set_on_the_instance_drives_the_steps():
    """``sampler.model_gradient = f`` on a closed-form model (whose fast path skipped it)."""
    s = samplers.LangevinDynamics(HarmonicModel(), step_size=0.1, noise_scale=1e-12)
    s.model_gradient = lambda x, model_kwargs=None: torch.zeros_like(x)
    x0 = torch.full((4, 2), 3.0)
    torch.testing.assert_close(s.sample(x=x0, n_steps=10), x0, rtol=0.0, atol=1e-9)


@pytest.mark.parametrize("backend", ["eager", "fused"])
def test_hmc_gradient_set_on_the_instance_drives_every_backend(backend):
    """``backend="fused"`` hands a plain analytic model to the whole-trajectory kernel (its
    CPU fallback here): it must take the instance's gradient instead, once per leapfrog step."""
    if backend == "fused":
        pytest.importorskip("torchebm.cuda", reason="backend='fused' needs torchebm-cuda")
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    s = samplers.HamiltonianMonteCarlo(model, step_size=0.1, n_leapfrog_steps=3, backend=backend)
    calls = []

    def gradient(x, model_kwargs=None):
        calls.append(1)
        return torch.zeros_like(x)

    s.model_gradient = gradient
    s.sample(x=torch.full((4, 2), 3.0), n_steps=5, generator=torch.Generator().manual_seed(0))
    assert len(calls) >= 5 * 3  # at least L per trajectory (plus the start's)


class _ShiftedQuadratic(BaseModel):
    def forward(self, x, shift=0.0):
        return 0.5 * (x - shift).pow(2).sum(-1)


@pytest.mark.parametrize("shift", [None, 2.0])
@pytest.mark.parametrize("sampler", ["langevin", "hmc"])
def test_089_gradient_override_with_its_own_parameter_names(sampler, shift):
    """0.8.9 called ``_model_gradient(x, model_kwargs)`` by position, so an override could
    name the second parameter as it liked; the steps pass it by keyword (``model_kwargs=``)
    and must reach such an override, with the call's conditioning."""
    base = samplers.LangevinDynamics if sampler == "langevin" else samplers.HamiltonianMonteCarlo

    class Shifted(base):
        seen = []

        def _model_gradient(self, x, kwargs):  # 0.8.9's positional call: any name
            type(self).seen.append(kwargs)
            return x - kwargs.get("shift", 0.0)

    conditioning = {} if shift is None else {"shift": shift}
    s = Shifted(_ShiftedQuadratic(), step_size=0.1)
    gen = torch.Generator().manual_seed(0)
    out = s.sample(x=torch.zeros(2000, 2), n_steps=100, generator=gen, model_kwargs=conditioning)
    assert Shifted.seen and all(k == conditioning for k in Shifted.seen)
    # N(shift, I): the mean of 2000 x 2 draws within 5 standard errors (0.016)
    assert abs(out.mean().item() - (shift or 0.0)) < 5 / (4000**0.5)


def test_089_gradient_override_keeps_its_keyword_calls():
    """Only an override whose parameters are not the hook's gets them by position: one named
    like the hook takes keywords in any order, one with ``**kw`` takes extra keywords, and a
    subclass of a subclass binds to the library hook's parameters."""
    x, c = torch.zeros(1, 2), {"shift": 1.0}

    class Named(samplers.LangevinDynamics):
        def _model_gradient(self, x, model_kwargs=None):
            return model_kwargs

    class Extra(samplers.LangevinDynamics):
        def _model_gradient(self, x, model_kwargs=None, **kw):
            return model_kwargs, kw

    class Renamed(samplers.LangevinDynamics):
        def _model_gradient(self, x, kwargs):
            return kwargs

    class Deeper(Renamed):
        def _model_gradient(self, x, conditioning):
            return ("deeper", super()._model_gradient(x, conditioning))

    model = GaussianModel(torch.zeros(2), torch.eye(2))
    assert Named(model).model_gradient(model_kwargs=c, x=x) is c
    assert Extra(model).model_gradient(x, c, scale=2) == (c, {"scale": 2})
    assert Renamed(model).model_gradient(model_kwargs=c, x=x) is c
    assert Deeper(model).model_gradient(model_kwargs=c, x=x) == ("deeper", c)


_SIGNATURES = {  # 0.8.9 overrides of `_model_gradient`: (self, x, conditioning) in any form
    "renamed": "def hook(self, z, cond): seen.append(cond); return torch.zeros_like(z)",
    "positional-only": (
        "def hook(self, x, model_kwargs=None, /): seen.append(model_kwargs); "
        "return torch.zeros_like(x)"
    ),
    "keyword-only": (
        "def hook(self, x, *, model_kwargs=None): seen.append(model_kwargs); "
        "return torch.zeros_like(x)"
    ),
    "var-keyword": "def hook(self, z, **kw): seen.append(kw['model_kwargs']); return torch.zeros_like(z)",
    "var-positional": "def hook(self, *args): seen.append(args[1]); return torch.zeros_like(args[0])",
}


@pytest.mark.parametrize("form", list(_SIGNATURES))
@pytest.mark.parametrize("sampler", ["langevin", "hmc"])
def test_089_gradient_override_of_any_signature_gets_the_conditioning(sampler, form):
    """The library calls the hook by position (HMC's start) and by keyword (the steps'
    `gradient_fn`): an override that can take the conditioning gets it both ways, with
    zero gradients keeping the chains where they started."""
    seen: list = []
    namespace = {"torch": torch, "seen": seen}
    exec(_SIGNATURES[form], namespace)
    base = samplers.LangevinDynamics if sampler == "langevin" else samplers.HamiltonianMonteCarlo
    cls = type("Frozen", (base,), {"_model_gradient": namespace["hook"]})
    x0, c = torch.full((8, 2), 3.0), {"shift": 1.0}
    options = {"noise_scale": 1e-12} if sampler == "langevin" else {"n_leapfrog_steps": 2}
    out = cls(_ShiftedQuadratic(), step_size=0.1, **options).sample(
        x=x0, n_steps=5, model_kwargs=c, generator=torch.Generator().manual_seed(0)
    )
    assert seen and all(k == c for k in seen)
    if sampler == "langevin":
        torch.testing.assert_close(out, x0, rtol=0.0, atol=1e-9)
    assert "model_kwargs" in str(inspect.signature(cls(_ShiftedQuadratic()).model_gradient))


class _ZeroGradientMixin:
    """A 0.8.9 user's mixin: its ``_model_gradient`` (own parameter names) overrides the
    sampler's where the mixin comes first in the bases, as it did in 0.8.9."""

    calls = 0

    def _model_gradient(self, x, kwargs):
        type(self).calls += 1
        return torch.zeros_like(x)


@pytest.mark.parametrize("sampler", ["langevin", "hmc"])
def test_089_gradient_override_from_a_mixin_drives_the_steps(sampler):
    base = samplers.LangevinDynamics if sampler == "langevin" else samplers.HamiltonianMonteCarlo
    options = {"noise_scale": 1e-12} if sampler == "langevin" else {"n_leapfrog_steps": 2}
    cls = type("Frozen", (_ZeroGradientMixin, base), {"calls": 0})
    deeper = type("Deeper", (cls,), {"calls": 0})  # inherits the override once installed
    x0 = torch.full((8, 2), 3.0)
    for klass in (cls, deeper):
        out = klass(_Quadratic(), step_size=0.1, **options).sample(
            x=x0, n_steps=5, generator=torch.Generator().manual_seed(0)
        )
        assert klass.calls >= 5
        if sampler == "langevin":  # zero gradients: the chains stay (the model's would move them)
            torch.testing.assert_close(out, x0, rtol=0.0, atol=1e-9)
    assert deeper.model_gradient is cls.model_gradient


def test_089_mixin_after_the_sampler_does_not_override_its_gradient():
    """Behind the sampler in the bases the mixin's hook was never reached in 0.8.9 either."""
    cls = type("Behind", (samplers.LangevinDynamics, _ZeroGradientMixin), {"calls": 0})
    assert cls.model_gradient is samplers.LangevinDynamics.model_gradient
    x0 = torch.full((8, 2), 3.0)
    out = cls(_Quadratic(), step_size=0.1, noise_scale=1e-12).sample(x=x0, n_steps=5)
    assert cls.calls == 0
    torch.testing.assert_close(out, x0 * 0.9**5)


def test_retired_0_8_9_hook_from_a_mixin_warns_once_where_it_meets_the_sampler():
    mixin = type("Momentum", (), {"_initialize_momentum": lambda self, x: x})
    with pytest.warns(
        UserWarning, match=r"Mine\._initialize_momentum overrides a torchebm 0\.8\.9"
    ):
        mine = type("Mine", (mixin, samplers.HamiltonianMonteCarlo), {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        type("Deeper", (mine,), {})
    with warnings.catch_warnings():  # behind the sampler: never reached in 0.8.9 either
        warnings.simplefilter("error")
        type("Behind", (samplers.HamiltonianMonteCarlo, mixin), {})


def test_a_subclass_of_a_subclass_with_a_retired_hook_is_not_warned_again():
    with pytest.warns(UserWarning, match=r"Mine\._initialize_momentum overrides"):
        mine = type("Mine", (samplers.HamiltonianMonteCarlo,), {"_initialize_momentum": id})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        type("Deeper", (mine,), {})
