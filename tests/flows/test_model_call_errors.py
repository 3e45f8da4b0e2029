"""A model whose signature refuses the call a flow objective makes is named.

``EquilibriumMatchingLoss`` calls ``model(x, t, **model_kwargs)`` and ``EnergyMatchingLoss``
``model(x, **model_kwargs)``; an energy, a field or an unconditional model given ``y`` raised
Python's ``TypeError`` ("got an unexpected keyword argument 'y'", "takes 2 positional
arguments but 3 were given") from inside the loss. `explain_model_error` decides from the
signature, read only after the error, and leaves every other ``TypeError`` alone.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.core.errors import ConfigurationError
from torchebm.flows import (
    EnergyMatchingLoss,
    EquilibriumMatchingLoss,
    probability_flow_log_likelihood,
)
from torchebm.flows._utils import ENERGY_CALL, FIELD_CALL, explain_model_error


class Energy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        return self.lin(x).squeeze(-1)


class Velocity(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x, t):
        return self.lin(x) * t[:, None]


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
