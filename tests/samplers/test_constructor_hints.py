"""Constructor mistakes a user makes often get an error that says what to pass instead."""

from __future__ import annotations

import pytest
import torch

from torchebm.core import GaussianModel
from torchebm.core.errors import ConfigurationError
from torchebm.integrators import HeunIntegrator, LeapfrogIntegrator
from torchebm.interpolants import LinearInterpolant
from torchebm.samplers import FlowSampler, HamiltonianMonteCarlo, LangevinDynamics


def _gaussian():
    return GaussianModel(torch.zeros(2), torch.eye(2))


def test_an_integrator_class_instead_of_an_instance_says_to_instantiate_it():
    # was: "requires a BaseSDERungeKuttaIntegrator; got ABCMeta"
    with pytest.raises(TypeError, match=r"got the class HeunIntegrator: pass an instance, Heun"):
        LangevinDynamics(_gaussian(), 0.1, integrator=HeunIntegrator)
    with pytest.raises(TypeError, match=r"got the class LeapfrogIntegrator: pass an instance"):
        HamiltonianMonteCarlo(_gaussian(), integrator=LeapfrogIntegrator)
    with pytest.raises(TypeError, match=r"got the class LinearInterpolant: pass an instance"):
        FlowSampler(lambda x, t: -x, interpolant=LinearInterpolant)
    # a class of another family is named without suggesting to instantiate it
    with pytest.raises(TypeError, match=r"got the class LinearInterpolant$"):
        LangevinDynamics(_gaussian(), 0.1, integrator=LinearInterpolant)


def test_a_dense_mass_matrix_is_told_to_pass_its_diagonal():
    # torch.eye(2) as HMC's mass was reported as "zero entries at [1, 2]" only
    with pytest.raises(ConfigurationError, match=r"pass its diagonal \(mass=M.diagonal\(\)\)"):
        HamiltonianMonteCarlo(_gaussian(), mass=torch.eye(2))
    with pytest.raises(ConfigurationError, match=r"got \[-1.0\] at flat indices \[1\]") as err:
        HamiltonianMonteCarlo(_gaussian(), mass=torch.tensor([1.0, -1.0]))
    assert "diagonal" not in str(err.value)  # a vector mass gets no matrix hint
    hmc = HamiltonianMonteCarlo(_gaussian(), mass=torch.eye(2).diagonal())
    assert hmc.sample(dim=2, n_samples=4, n_steps=2).shape == (4, 2)
