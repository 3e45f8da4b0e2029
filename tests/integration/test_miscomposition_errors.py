"""A component given by an unknown name, or an integrator of another dtype, raises the
library's `ConfigurationError` (a `ValueError`) naming what was asked and what is accepted.

The name registries and the integrator resolver raised a bare ``ValueError``, outside the
``torchebm.core.errors`` hierarchy that every other configuration check uses.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.core import GaussianModel
from torchebm.core.errors import ConfigurationError
from torchebm.flows import probability_flow_log_likelihood
from torchebm.integrators import EulerMaruyamaIntegrator, LeapfrogIntegrator, RK4Integrator
from torchebm.losses import EquilibriumMatchingLoss, FlowMatchingLoss
from torchebm.samplers import FlowSampler, HamiltonianMonteCarlo, LangevinDynamics


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
