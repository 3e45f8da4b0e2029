"""A model whose signature refuses the call a flow objective makes is named.

``EquilibriumMatchingLoss`` calls ``model(x, t, **model_kwargs)`` and ``EnergyMatchingLoss``
``model(x, **model_kwargs)``; an energy, a field or an unconditional model given ``y`` raised
Python's ``TypeError`` ("got an unexpected keyword argument 'y'", "takes 2 positional
arguments but 3 were given") from inside the loss. `explain_model_error` decides from the
signature, read only after the error, and leaves every other ``TypeError`` alone.
"""

from __future__ import annotations

import functools

import pytest
import torch
from _support.call_kinds import Energy, Velocity
from torch import nn

from torchebm.core.errors import ConfigurationError
from torchebm.flows import (
    EnergyMatchingLoss,
    EquilibriumMatchingLoss,
    probability_flow_log_likelihood,
)
from torchebm.flows._utils import ENERGY_CALL, FIELD_CALL, explain_model_error

X8 = torch.randn(8, 2, generator=torch.Generator().manual_seed(4))
Y8 = torch.arange(8) % 3


@pytest.mark.parametrize(
    "loss, model, kw, expected",
    [
        (EquilibriumMatchingLoss, Energy, {}, r"calls model\(x, t\) but Energy\.forward\(x\)"),
        (EquilibriumMatchingLoss, Velocity, {"y": Y8}, r"calls model\(x, t, y=\.\.\.\) but Vel"),
        (EnergyMatchingLoss, Velocity, {}, r"calls model\(x\) but Velocity\.forward\(x, t\)"),
        (EnergyMatchingLoss, Energy, {"y": Y8}, r"calls model\(x, y=\.\.\.\) but Energy\.forward"),
    ],
    ids=["eqm-energy", "eqm-y", "em-field", "em-y"],
)
def test_a_flow_objective_names_a_model_that_refuses_its_call(loss, model, kw, expected):
    with pytest.raises(ConfigurationError, match=rf"{loss.__name__} {expected}") as info:
        loss(model())(X8, **kw)
    assert isinstance(info.value, TypeError) and type(info.value.__cause__) is TypeError


def test_plain_functions_are_read_and_unreadable_callables_left_alone():
    err = TypeError("original")
    with pytest.raises(ConfigurationError, match=r"S calls model\(x, t\) but energy\(x\)"):

        def energy(x):
            return x.sum(-1)

        explain_model_error("S", energy, err, FIELD_CALL, {})
    # accepted calls, no readable signature, or another error type: nothing raised
    explain_model_error("S", lambda *a, **k: None, err, FIELD_CALL, {"y": 1})
    explain_model_error("S", torch.sin, err, FIELD_CALL, {})
    explain_model_error("S", energy, ValueError("other"), FIELD_CALL, {})
    explain_model_error("S", Energy(), err, ENERGY_CALL, {})


def test_the_likelihood_names_an_energy_given_as_its_field():
    with pytest.raises(ConfigurationError) as info:
        probability_flow_log_likelihood(Energy(), X8, n_steps=2)
    msg = str(info.value)
    assert "probability_flow_log_likelihood calls model(x, t) but Energy.forward(x)" in msg
    assert isinstance(info.value, TypeError) and type(info.value.__cause__) is TypeError


def test_a_type_error_inside_a_field_reaches_the_likelihood_caller_unchanged():
    def field(x, t):
        raise TypeError("inside")

    with pytest.raises(TypeError) as info:
        probability_flow_log_likelihood(field, X8, n_steps=2)
    assert type(info.value) is TypeError and str(info.value) == "inside"


def _inside(x, scale):
    raise TypeError("inside")


class _CallableEnergy:
    def __call__(self, x, scale):
        raise TypeError("inside")


def _passthrough(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


class _WrappedForward(nn.Module):
    @_passthrough  # a decorated forward: its signature is read through functools.wraps
    def forward(self, x, scale):
        raise TypeError("inside")


def _raised_by(fn, *args):
    try:
        fn(*args)
    except TypeError as err:
        return err
    raise AssertionError("no TypeError")


@pytest.mark.parametrize(
    "model, run",
    [
        (_inside, lambda: _inside(X8, 1.0)),
        (functools.partial(_inside), lambda: functools.partial(_inside)(X8, 1.0)),
        (_CallableEnergy(), lambda: _CallableEnergy()(X8, 1.0)),
        (_WrappedForward(), lambda: _WrappedForward()(X8, 1.0)),
    ],
    ids=["function", "partial", "callable-object", "wraps-forward"],
)
def test_an_error_raised_inside_the_model_is_left_alone(model, run):
    # each signature refuses model(x); the error came from inside the function read
    err = _raised_by(run)
    explain_model_error("S", model, err, ENERGY_CALL, {})  # nothing raised
    # the same signature with the error of a refused call (raised before entering it)
    refused = _raised_by(lambda: model(X8))
    with pytest.raises(ConfigurationError, match=r"S calls model\(x\) but .*\(x, scale\)"):
        explain_model_error("S", model, refused, ENERGY_CALL, {})


class GuidedVelocity(nn.Module):
    """A field that requires its labels (as a label-guided wrapper does)."""

    def forward(self, x, t, *, y):
        return x * t[:, None]


def test_a_field_left_without_its_required_labels_is_told_to_get_them():
    with pytest.raises(ConfigurationError) as info:
        EquilibriumMatchingLoss(GuidedVelocity())(X8)
    msg = str(info.value)
    assert "calls model(x, t) but GuidedVelocity.forward(x, t, *, y)" in msg
    assert msg.endswith("the model requires the conditioning ['y']: pass it as y / model_kwargs")

    # a keyword-only t is a field's, not conditioning: the energy call's hint stays
    class KeywordT(nn.Module):
        def forward(self, x, *, t):
            return x

    with pytest.raises(ConfigurationError, match="EnergyMatchingLoss accepts an energy"):
        explain_model_error("EnergyMatchingLoss", KeywordT(), TypeError(), ENERGY_CALL, {})
