"""A plain ``nn.Module`` that is not an energy, given to an energy sampler, fails at once.

An output shaped like ``x`` (a vector field), ``(B, 1)`` or the wrong batch size was summed
and differentiated, so Langevin and gradient descent ran on the gradient of a sum of field
components and returned garbage. A true energy ``(B,)`` keeps working (closed form checked).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.core.errors import ConfigurationError, ShapeError
from torchebm.samplers import (
    AnnealedImportanceSampling,
    FlowSampler,
    GradientDescentSampler,
    HamiltonianMonteCarlo,
    LangevinDynamics,
    NesterovSampler,
    RiemannianManifoldHMC,
)


class Field(nn.Module):
    """A vector field ``(B, d) -> (B, d)``: what a flow model returns."""

    def forward(self, x):
        return 2.0 * x


class Column(nn.Module):
    """An energy left as a column ``(B, 1)`` (a final ``Linear(h, 1)`` without squeeze)."""

    def forward(self, x):
        return 0.5 * x.pow(2).sum(-1, keepdim=True)


class ShortBatch(nn.Module):
    """Energies with one row too few ``(B - 1,)``."""

    def forward(self, x):
        return 0.5 * x[1:].pow(2).sum(-1)


class Energy(nn.Module):
    """``E(x) = |x|^2 / 2`` as ``(B,)``."""

    def forward(self, x):
        return 0.5 * x.pow(2).sum(-1)


SAMPLERS = {
    "langevin": lambda m: LangevinDynamics(m, step_size=0.01),
    "langevin-heun": lambda m: LangevinDynamics(m, step_size=0.01, integrator="heun"),
    "descent": lambda m: GradientDescentSampler(m, step_size=0.01),
    "nesterov": lambda m: NesterovSampler(m, step_size=0.01),
}
BAD = {Field: r"\(8, 2\)", Column: r"\(8, 1\)", ShortBatch: r"\(7,\)"}


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("model", BAD, ids=lambda c: c.__name__)
def test_a_non_energy_model_is_named_with_what_it_returned(sampler, model):
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(
        ShapeError, match=rf"{model.__name__} must return energies .*got {BAD[model]}"
    ):
        SAMPLERS[sampler](model()).sample(x=x, n_steps=3)


def test_a_plain_module_energy_still_descends_in_closed_form():
    # E = |x|^2/2, grad = x: n steps of size h give x (1 - h)^n (float64 reference)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    out = GradientDescentSampler(Energy(), step_size=0.1).sample(x=x.clone(), n_steps=5)
    ref = x.double() * (1.0 - 0.1) ** 5
    torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-6)


# A model whose signature refuses the sampler's call (conditioning to an unconditional model,
# a field ``forward(x, t)`` to an energy sampler, an energy to FlowSampler) raised Python's
# TypeError from deep in the loop; now a ConfigurationError (a TypeError too) naming the
# sampler, the call and what it accepts, raised from the original.


class Velocity(nn.Module):
    def forward(self, x, t):
        return -x * t[:, None]


ENERGY_SAMPLERS = {
    **SAMPLERS,
    "hmc": lambda m: HamiltonianMonteCarlo(m, step_size=0.1, n_leapfrog_steps=2),
}
SAMPLER_CLASSES = {
    "langevin": LangevinDynamics,
    "hmc": HamiltonianMonteCarlo,
    "rmhmc": lambda m: RiemannianManifoldHMC(m, metric_fn=lambda x: torch.ones_like(x)),
    "descent": GradientDescentSampler,
    "nesterov": NesterovSampler,
    "flow": FlowSampler,
    "ais": AnnealedImportanceSampling,
}
X8 = torch.randn(8, 2, generator=torch.Generator().manual_seed(2))


def _refused(sampler, **kw):
    with pytest.raises(ConfigurationError) as info:
        sampler.sample(x=X8, n_steps=2, **kw)
    err = info.value
    assert isinstance(err, TypeError) and type(err.__cause__) is TypeError
    return str(err)


@pytest.mark.parametrize("sampler", [*ENERGY_SAMPLERS, "flow"])
def test_conditioning_for_an_unconditional_model_names_the_sampler_and_call(sampler):
    s = FlowSampler(Velocity()) if sampler == "flow" else ENERGY_SAMPLERS[sampler](Energy())
    msg = _refused(s, y=torch.arange(8))
    call = "model(x, t, y=...)" if sampler == "flow" else "model(x, y=...)"
    assert f"{type(s).__name__} calls {call} but {type(s.model).__name__}.forward" in msg
    assert "unexpected keyword argument 'y'" in msg and "takes no conditioning ['y']" in msg


@pytest.mark.parametrize("sampler", [*ENERGY_SAMPLERS, "flow"])
def test_a_model_of_the_other_kind_names_the_sampler_and_call(sampler):
    if sampler == "flow":
        msg = _refused(FlowSampler(Energy()))
        assert "FlowSampler calls model(x, t) but Energy.forward(x) refuses it" in msg
        assert "accepts a velocity or score field" in msg
    else:
        s = ENERGY_SAMPLERS[sampler](Velocity())
        msg = _refused(s)
        assert f"{type(s).__name__} calls model(x) but Velocity.forward(x, t) refuses it" in msg
        assert "accepts an energy" in msg and "use FlowSampler" in msg


def test_ais_names_a_field_given_as_its_energy():
    with pytest.raises(ConfigurationError, match=r"AnnealedImportanceSampling calls model\(x\)"):
        AnnealedImportanceSampling(Velocity(), n_intermediate=2).estimate(4, 2)


@pytest.mark.parametrize("cls", SAMPLER_CLASSES)
def test_a_sampler_given_as_the_model_is_refused_at_construction(cls):
    other = LangevinDynamics(Energy(), step_size=0.01)
    with pytest.raises(TypeError, match=r"requires a model .* got the sampler LangevinDynamics"):
        SAMPLER_CLASSES[cls](other)


@pytest.mark.filterwarnings("ignore:.*energy_function:DeprecationWarning")
@pytest.mark.parametrize("cls", [LangevinDynamics, HamiltonianMonteCarlo])
def test_a_sampler_given_as_the_089_energy_function_is_refused_at_construction(cls):
    other = LangevinDynamics(Energy(), step_size=0.01)
    with pytest.raises(TypeError, match=rf"{cls.__name__} requires a model .* the sampler Lan"):
        cls(energy_function=other, step_size=0.01)


class InnerTypeError(nn.Module):
    def forward(self, x, t=None, **kwargs):
        raise TypeError("inside")


@pytest.mark.parametrize("sampler", [*ENERGY_SAMPLERS, "flow"])
def test_a_type_error_from_inside_the_model_is_not_rewritten(sampler):
    s = (
        FlowSampler(InnerTypeError())
        if sampler == "flow"
        else ENERGY_SAMPLERS[sampler](InnerTypeError())
    )
    with pytest.raises(TypeError) as info:
        s.sample(x=X8, n_steps=2, y=torch.arange(8))
    assert type(info.value) is TypeError and str(info.value) == "inside"


class HookFedEnergy(nn.Module):
    """``forward(x, scale)``, its ``scale`` fed by a forward pre-hook: accepts ``model(x)``."""

    def __init__(self):
        super().__init__()
        self.register_forward_pre_hook(lambda mod, args: (args[0], 1.0))

    def forward(self, x, scale):
        raise TypeError("inside")


class CallOverrideEnergy(nn.Module):
    """A ``__call__`` override passing ``forward`` an argument the sampler does not."""

    def __call__(self, x):
        return self.forward(x, 1.0)

    def forward(self, x, scale):
        raise TypeError("inside")


@pytest.mark.parametrize("model", [HookFedEnergy, CallOverrideEnergy])
@pytest.mark.parametrize("sampler", ENERGY_SAMPLERS)
def test_a_model_error_is_not_blamed_on_a_call_its_hook_or_call_completes(sampler, model):
    # forward's signature alone refuses model(x), but forward ran: the error is the model's
    with pytest.raises(TypeError) as info:
        ENERGY_SAMPLERS[sampler](model()).sample(x=X8, n_steps=2)
    assert type(info.value) is TypeError and str(info.value) == "inside"
