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


def test_a_mass_matrix_that_is_not_one_says_what_a_dense_mass_needs():
    # torch.eye(2) as HMC's mass was reported as "zero entries at [1, 2]" only; a square
    # mass with entries <= 0 is now read as a dense matrix and checked as one
    with pytest.raises(ConfigurationError, match=r"must be positive definite, got mass"):
        HamiltonianMonteCarlo(_gaussian(), mass=torch.tensor([[1.0, 2.0], [2.0, 1.0]]) - 1.5)
    with pytest.raises(ConfigurationError, match=r"must be symmetric, got max \|M - M\^T\| = 1"):
        HamiltonianMonteCarlo(_gaussian(), mass=torch.tensor([[2.0, -1.0], [0.0, 2.0]]))
    with pytest.raises(ConfigurationError, match=r"got \[-1.0\] at flat indices \[1\]") as err:
        HamiltonianMonteCarlo(_gaussian(), mass=torch.tensor([1.0, -1.0]))
    assert "diagonal" not in str(err.value)  # a vector mass gets no matrix hint
    hmc = HamiltonianMonteCarlo(_gaussian(), mass=torch.eye(2))  # a dense identity
    assert hmc.sample(dim=2, n_samples=4, n_steps=2).shape == (4, 2)
