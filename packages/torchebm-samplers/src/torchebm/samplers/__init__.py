r"""``torchebm.samplers``: MCMC, descent and flow samplers (the ``torchebm-samplers`` distribution).

Every sampler is a small [`step`][torchebm.core.BaseSampler.step] on the shared loop of
[`torchebm.core.BaseSampler`][torchebm.core.BaseSampler], so they share one ``sample()`` contract::

    sample(x=None, dim=None, n_steps=None, n_samples=1, thin=1, return_trajectory=False,
           return_diagnostics=False, reset_schedulers=True, *, model_kwargs=None,
           generator=None, nan_policy=None, compile=False)

Example:
    >>> import torch
    >>> from torchebm.core import GaussianModel
    >>> from torchebm.samplers import LangevinDynamics
    >>> sampler = LangevinDynamics(GaussianModel(torch.zeros(2), torch.eye(2)), step_size=0.05)
    >>> sampler.sample(dim=2, n_samples=100, n_steps=50).shape
    torch.Size([100, 2])
"""

from importlib.metadata import version as _version

from torchebm.samplers._ais import (
    AISResult,
    AnnealedImportanceSampling,
    annealed_importance_sampling,
)
from torchebm.samplers._flow import FlowSampler, PredictionType
from torchebm.samplers._gradient_descent import GradientDescentSampler, NesterovSampler
from torchebm.samplers._hmc import HamiltonianMonteCarlo, RiemannianManifoldHMC
from torchebm.samplers._langevin import LangevinDynamics

__version__ = _version("torchebm-samplers")

__all__ = [
    "LangevinDynamics",
    "HamiltonianMonteCarlo",
    "RiemannianManifoldHMC",
    "GradientDescentSampler",
    "NesterovSampler",
    "FlowSampler",
    "PredictionType",
    "AnnealedImportanceSampling",
    "AISResult",
    "annealed_importance_sampling",
]
