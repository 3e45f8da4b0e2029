"""A component given by an unknown name, or an integrator of another dtype, raises the
library's `ConfigurationError` (a `ValueError`) naming what was asked and what is accepted.

The name registries and the integrator resolver raised a bare ``ValueError``, outside the
``torchebm.core.errors`` hierarchy that every other configuration check uses.
"""

from __future__ import annotations

import pytest
import torch
from _support.call_kinds import Energy, Velocity
from torch import nn

from torchebm.core import GaussianModel
from torchebm.core.errors import ConfigurationError
from torchebm.flows import probability_flow_log_likelihood
from torchebm.integrators import EulerMaruyamaIntegrator, LeapfrogIntegrator, RK4Integrator
from torchebm.losses import (
    ContrastiveDivergence,
    DenoisingScoreMatching,
    EnergyMatchingLoss,
    EquilibriumMatchingLoss,
    FlowMatchingLoss,
    ScoreMatching,
    SlicedScoreMatching,
)
from torchebm.models import LabelClassifierFreeGuidance
from torchebm.samplers import (
    AnnealedImportanceSampling,
    FlowSampler,
    GradientDescentSampler,
    HamiltonianMonteCarlo,
    LangevinDynamics,
    NesterovSampler,
)


class Field(nn.Module):
    def forward(self, x, t=None):
        return -x


def gaussian():
    return GaussianModel(torch.zeros(2), torch.eye(2))


X = torch.zeros(4, 2)
UNKNOWN = {
    "loss-interpolant": (lambda: FlowMatchingLoss(Field(), interpolant="bogus"), "interpolant"),
    "loss-coupling": (lambda: EquilibriumMatchingLoss(Field(), coupling="bogus"), "coupling"),
    "flow-integrator": (lambda: FlowSampler(Field(), integrator="bogus"), "integrator"),
    "langevin-integrator": (lambda: LangevinDynamics(gaussian(), integrator="bogus"), "integrator"),
    "likelihood-interpolant": (
        lambda: probability_flow_log_likelihood(Field(), X, interpolant="bogus"),
        "interpolant",
    ),
}


@pytest.mark.parametrize("case", UNKNOWN)
def test_an_unknown_name_is_a_configuration_error(case):
    build, kind = UNKNOWN[case]
    with pytest.raises(ConfigurationError, match=rf"Unknown {kind}.*bogus.*(Valid names|Choose)"):
        build()


OTHER_DTYPE = {
    "langevin": lambda: LangevinDynamics(
        gaussian(), integrator=EulerMaruyamaIntegrator(dtype=torch.float64)
    ),
    "hmc": lambda: HamiltonianMonteCarlo(
        gaussian(), integrator=LeapfrogIntegrator(dtype=torch.float64)
    ),
    "flow": lambda: FlowSampler(Field(), integrator=RK4Integrator(dtype=torch.float64)),
}


@pytest.mark.parametrize("case", OTHER_DTYPE)
def test_an_integrator_of_another_dtype_is_a_configuration_error(case):
    with pytest.raises(ConfigurationError, match=r"integrator dtype torch\.float64 does not match"):
        OTHER_DTYPE[case]()


# --------------------------------------------------------------------------------------------
# A model that cannot take the call a sampler or loss makes: Python's TypeError
# ("forward() got an unexpected keyword argument 'y'", "takes 2 positional arguments but 3
# were given", "missing 1 required positional argument: 't'") became a library error naming
# the sampler/loss, the call it made and what it accepts; raised from the original.


XS = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
LABELS = torch.arange(8) % 3


def _lang(model):
    return LangevinDynamics(model, step_size=0.01)


def _cd(model):
    return ContrastiveDivergence(model, _lang(model), k_steps=1)


ENERGY_LOSSES = {
    "cd": _cd,
    "score-matching": lambda m: ScoreMatching(m),
    "sliced": lambda m: SlicedScoreMatching(m),
    "denoising": lambda m: DenoisingScoreMatching(m),
    "energy-matching": lambda m: EnergyMatchingLoss(m),
}
FIELD_LOSSES = {
    "flow-matching": lambda m: FlowMatchingLoss(m),
    "eqm": lambda m: EquilibriumMatchingLoss(m),
}
ENERGY_SAMPLERS = {
    "langevin": _lang,
    "hmc": lambda m: HamiltonianMonteCarlo(m, step_size=0.1, n_leapfrog_steps=2),
    "descent": lambda m: GradientDescentSampler(m, step_size=0.1),
    "nesterov": lambda m: NesterovSampler(m, step_size=0.1),
}
FIELD_SAMPLERS = {"flow": lambda m: FlowSampler(m)}


def _expect(err, owner, call, model, *words):
    """The library error: a ConfigurationError and a TypeError, from Python's TypeError."""
    assert isinstance(err, ConfigurationError) and isinstance(err, TypeError)
    assert type(err.__cause__) is TypeError  # the original, chained
    msg = str(err)
    for part in (f"{owner} calls {call}", f"{model}.forward", *words):
        assert part in msg, (part, msg)


def _loss_call(**kw):
    return lambda loss: loss(XS, **kw)


def _sample_call(**kw):
    return lambda sampler: sampler.sample(x=XS, n_steps=2, **kw)


ENERGY_OWNERS = {**ENERGY_LOSSES, **ENERGY_SAMPLERS}
FIELD_OWNERS = {**FIELD_LOSSES, **FIELD_SAMPLERS}
SAMPLERS = {**ENERGY_SAMPLERS, **FIELD_SAMPLERS}


def _run(kind, model, **kw):
    """Build the sampler or loss ``kind`` on ``model``; call it (conditioning ``kw``)."""
    owner = {**ENERGY_OWNERS, **FIELD_OWNERS}[kind](model)
    call = _sample_call if kind in SAMPLERS else _loss_call
    with pytest.raises(ConfigurationError) as info:
        call(**kw)(owner)
    return owner, info.value


@pytest.mark.parametrize("kind", [*ENERGY_OWNERS, *FIELD_OWNERS])
def test_an_unconditional_model_given_y_names_the_call(kind):
    field = kind in FIELD_OWNERS
    model = Velocity() if field else Energy()
    kw = (
        {"y": LABELS}
        if kind in SAMPLERS and kind != "langevin"
        else {"model_kwargs": {"y": LABELS}}
    )
    owner, err = _run(kind, model, **kw)
    call = "model(x, t, y=...)" if field else "model(x, y=...)"
    _expect(
        err, type(owner).__name__, call, type(model).__name__, "unexpected keyword argument 'y'"
    )
    assert "takes no conditioning ['y']" in str(err)


@pytest.mark.parametrize("kind", [*ENERGY_OWNERS, *FIELD_OWNERS])
def test_an_energy_for_a_field_or_a_field_for_an_energy_names_the_call(kind):
    field = kind in FIELD_OWNERS
    model = Energy() if field else Velocity()  # the other kind
    owner, err = _run(kind, model)
    # CD's sampler calls the model first: the error names it
    name = "LangevinDynamics" if kind == "cd" else type(owner).__name__
    if field:
        _expect(err, name, "model(x, t)", "Energy", "too many positional", "accepts a velocity")
    else:
        _expect(
            err,
            name,
            "model(x)",
            "Velocity",
            "missing a required argument: 't'",
            "accepts an energy",
        )


def test_ais_given_a_field_names_the_call():
    with pytest.raises(ConfigurationError) as info:
        AnnealedImportanceSampling(Velocity(), n_intermediate=2).estimate(4, 2)
    _expect(info.value, "AnnealedImportanceSampling", "model(x)", "Velocity", "accepts an energy")


NOT_A_MODEL = {
    "langevin": lambda m: LangevinDynamics(m, step_size=0.01),
    "hmc": lambda m: HamiltonianMonteCarlo(m, step_size=0.1),
    "descent": lambda m: GradientDescentSampler(m),
    "flow": lambda m: FlowSampler(m),
    "ais": lambda m: AnnealedImportanceSampling(m),
    "cd": lambda m: ContrastiveDivergence(model=m, sampler=_lang(Energy())),
    "score-matching": lambda m: ScoreMatching(m),
    "flow-matching": lambda m: FlowMatchingLoss(m),
    "eqm": lambda m: EquilibriumMatchingLoss(m),
    "energy-matching": lambda m: EnergyMatchingLoss(m),
}


@pytest.mark.parametrize("given", ["sampler", "loss"])
@pytest.mark.parametrize("kind", NOT_A_MODEL)
def test_a_sampler_or_a_loss_passed_as_the_model_is_refused_at_construction(kind, given):
    # before: built, then NotImplementedError "Module [LangevinDynamics] is missing the
    # required forward function" (or a positional TypeError) at the first call
    obj = _lang(Energy()) if given == "sampler" else ScoreMatching(Energy())
    with pytest.raises(
        TypeError, match=rf"requires a model .* got the {given} {type(obj).__name__}"
    ):
        NOT_A_MODEL[kind](obj)


class Raising(nn.Module):
    """A model whose signature accepts every call, and which raises a TypeError inside."""

    def forward(self, x, t=None, **kwargs):
        raise TypeError("raised inside the model")


@pytest.mark.parametrize("kind", [*ENERGY_OWNERS, *FIELD_OWNERS])
def test_a_type_error_raised_inside_a_model_is_reraised_unchanged(kind):
    owner = {**ENERGY_OWNERS, **FIELD_OWNERS}[kind](Raising())
    call = _sample_call if kind in SAMPLERS else _loss_call
    with pytest.raises(TypeError) as info:
        call(model_kwargs={"y": LABELS})(owner)
    assert type(info.value) is TypeError and str(info.value) == "raised inside the model"


class AnyArgs(nn.Module):
    """``forward(*args, **kwargs)``: an energy of ``args[0]`` that reads ``y`` when given."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, *args, **kwargs):
        y = kwargs.get("y")
        e = self.lin(args[0]).squeeze(-1)
        return e if y is None else e + 0.1 * y.to(e.dtype)


@pytest.mark.parametrize("kind", ENERGY_OWNERS)
def test_a_model_taking_args_and_kwargs_is_not_refused(kind):
    owner = ENERGY_OWNERS[kind](AnyArgs())
    out = (_sample_call if kind in SAMPLERS else _loss_call)(model_kwargs={"y": LABELS})(owner)
    value = out[0] if isinstance(out, tuple) else out
    assert bool(torch.isfinite(value).all())


def test_a_ddp_wrapped_model_still_runs_and_is_read_through(ddp_group):
    # the success path runs; a refused call names the wrapped module's forward
    assert (
        _lang(nn.parallel.DistributedDataParallel(Energy())).sample(x=XS, n_steps=2).shape
        == XS.shape
    )
    with pytest.raises(ConfigurationError, match=r"calls model\(x\) but Velocity\.forward\(x, t\)"):
        _lang(nn.parallel.DistributedDataParallel(Velocity())).sample(x=XS, n_steps=2)


@pytest.mark.slow  # torch.compile's first use imports dynamo (~8 s on 2 cores)
def test_a_compiled_model_still_runs_and_is_read_through():
    compiled = torch.compile(Energy(), backend="eager")
    assert _lang(compiled).sample(x=XS, n_steps=2).shape == XS.shape
    with pytest.raises(ConfigurationError, match=r"calls model\(x\) but Velocity\.forward\(x, t\)"):
        _lang(torch.compile(Velocity(), backend="eager")).sample(x=XS, n_steps=2)


def test_a_classifier_free_guidance_wrapper_still_runs():
    from torchebm.models import ClassifierFreeGuidance

    class Conditional(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(4, 2)

        def forward(self, x, t, y):
            return -x + self.emb(y) * t[:, None]

    guided = ClassifierFreeGuidance(Conditional(), guidance_scale=2.0, null_condition=3)
    out = FlowSampler(guided).sample(x=XS, n_steps=2, y=LABELS)
    assert out.shape == XS.shape and bool(torch.isfinite(out).all())
    loss = FlowMatchingLoss(Conditional())(XS, y=LABELS)
    assert bool(torch.isfinite(loss))


class _LabelledField(nn.Module):
    def forward(self, x, t, y=None):
        return -x


def test_a_label_guided_field_sampled_without_labels_is_told_to_get_them():
    guided = LabelClassifierFreeGuidance(_LabelledField(), null_label_id=3, guide_channels=None)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigurationError) as info:
        FlowSampler(guided).sample(x=x, n_steps=2)
    msg = str(info.value)
    assert msg.startswith("FlowSampler calls model(x, t) but LabelClassifierFreeGuidance.forward")
    assert msg.endswith("the model requires the conditioning ['y']: pass it as y / model_kwargs")
    FlowSampler(guided).sample(x=x, n_steps=2, y=torch.arange(4) % 3)  # with labels: accepted
