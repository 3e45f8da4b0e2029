"""The training objectives keep torchebm 0.8.9's defaults.

A researcher who writes ``SlicedScoreMatching(model)`` or ``EquilibriumMatchingLoss(model)``
gets the published recipe; a changed default (``n_projections``, the EqM schedule, the
Energy Matching temperatures) passes every test that sets the option explicitly. The
values below are those of the published 0.8.9 signatures (``torchebm/losses/*.py``).
"""

from __future__ import annotations

import inspect

import pytest

from torchebm import losses

DEFAULTS_089 = {
    "ContrastiveDivergence": {
        "persistent": False,
        "buffer_size": 10000,
        "new_sample_ratio": 0.05,
        "init_steps": 100,
        "energy_reg_weight": 0.001,
        "noise_scale": 0.0001,
        "add_noise_to_real": False,
    },
    "ScoreMatching": {
        "hessian_method": "exact",
        "regularization_strength": 0.0,
        "use_autograd": True,
    },
    "SlicedScoreMatching": {
        "n_projections": 5,
        "projection_type": "rademacher",
        "regularization_strength": 0.0,
    },
    "DenoisingScoreMatching": {"noise_scale": 0.01, "regularization_strength": 0.0},
    "FlowMatchingLoss": {
        "interpolant": "linear",
        "t_sampler": "uniform",
        "t_p_mean": -1.2,
        "t_p_std": 1.2,
        "train_eps": 0.0,
        "negate_velocity": False,
    },
    "EquilibriumMatchingLoss": {
        "interpolant": "linear",
        "prediction": "velocity",
        "energy_type": "none",
        "ct": "truncated",
        "ct_threshold": 0.8,
        "ct_multiplier": 4.0,
        "apply_dispersion": False,
        "dispersion_weight": 0.5,
        "time_invariant": True,
        "t_sampler": "uniform",
        "t_p_mean": -1.2,
        "t_p_std": 1.2,
        "train_eps": 0.0,
    },
    "EnergyMatchingLoss": {
        "interpolant": "linear",
        "coupling": "ot",
        "sigma": 0.1,
        "flow_weight_cutoff": 0.8,
        "lambda_cd": 2.0,
        "epsilon_max": 0.15,
        "tau_star": 0.8,
        "n_langevin_steps": 200,
        "langevin_dt": 0.01,
        "noise_fraction": 0.5,
        "cd_trim_fraction": 0.1,
        "cd_clamp": 0.02,
        "t_sampler": "uniform",
        "t_p_mean": -1.2,
        "t_p_std": 1.2,
    },
}


@pytest.mark.parametrize("name", sorted(DEFAULTS_089))
def test_constructor_defaults_are_those_of_0_8_9(name):
    params = inspect.signature(getattr(losses, name)).parameters
    got = {k: params[k].default for k in DEFAULTS_089[name]}
    assert got == DEFAULTS_089[name]
