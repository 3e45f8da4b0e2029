"""ParallelTemperingCD checks its base_temperature against the library samplers' declared
``stationary_temperature``: a constant noise_scale is held as a ConstantScheduler, so a check
of "not scheduled" never fired for LangevinDynamics itself."""

from __future__ import annotations

import pytest
import torch

from torchebm.core import ExponentialDecayScheduler, GaussianModel
from torchebm.losses import ParallelTemperingCD
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics


def _model():
    return GaussianModel(torch.zeros(1), torch.eye(1))


def test_langevin_declares_sigma_squared_and_hmc_one():
    m = _model()
    assert LangevinDynamics(m, step_size=0.01, noise_scale=0.5).stationary_temperature == 0.25
    decaying = ExponentialDecayScheduler(1.0, 0.9)
    assert LangevinDynamics(m, step_size=0.01, noise_scale=decaying).stationary_temperature is None
    assert HamiltonianMonteCarlo(m, step_size=0.1).stationary_temperature == 1.0


def test_a_wrong_base_temperature_is_refused_with_the_library_langevin():
    m = _model()
    pt = ParallelTemperingCD(m, LangevinDynamics(m, step_size=0.01, noise_scale=0.5), k_steps=1)
    with pytest.raises(ValueError, match=r"T0 = 0.25 .*pass base_temperature=0.25"):
        pt(torch.zeros(8, 1), generator=torch.Generator().manual_seed(0))
    sampler = LangevinDynamics(m, step_size=0.01, noise_scale=0.5)
    right = ParallelTemperingCD(m, sampler, k_steps=1, base_temperature=0.25)
    assert torch.isfinite(right(torch.zeros(8, 1), generator=torch.Generator().manual_seed(0))[0])
    hmc = HamiltonianMonteCarlo(m, step_size=0.1)
    with pytest.raises(ValueError, match="T0 = 1"):
        ParallelTemperingCD(m, hmc, k_steps=1, base_temperature=2.0)(torch.zeros(8, 1))


def test_the_suggested_base_temperature_is_accepted():
    # the message printed 6 digits ("pass base_temperature=0.0152416") and the check
    # allows 1e-6 relative: passing the suggestion was refused again
    import re

    m = _model()
    sampler = LangevinDynamics(m, step_size=0.01, noise_scale=0.123456789)
    with pytest.raises(ValueError, match="pass base_temperature=") as err:
        ParallelTemperingCD(m, sampler, k_steps=1)(torch.zeros(8, 1))
    suggested = float(re.search(r"pass base_temperature=(\S+)", str(err.value)).group(1))
    right = ParallelTemperingCD(m, sampler, k_steps=1, base_temperature=suggested)
    assert torch.isfinite(right(torch.zeros(8, 1), generator=torch.Generator().manual_seed(0))[0])
