"""Validation rows whose check no existing test pinned (each survived a mutation run).

Each row is one bad input that the documented check must refuse with a named error. The
row id starts with the id of the mutant it kills: each row passes against the library and
failed (checked by mutation) when that one check was deleted or weakened.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from _support.registry import LinearField, MLPEnergy
from torch import nn

import torchebm.integrators as I
import torchebm.interpolants as IP
import torchebm.losses as L
import torchebm.models as M
import torchebm.samplers as S
from torchebm.core import HarmonicModel
from torchebm.core.errors import ConfigurationError, NonFiniteError, ShapeError
from torchebm.flows import EquilibriumMatchingLoss
from torchebm.metrics import mmd2

NAN, INF = float("nan"), float("inf")


def X():
    return torch.randn(8, 2, generator=torch.Generator().manual_seed(0))


def _assign(obj, name, value):
    setattr(obj, name, value)


def _rmhmc(dtype):
    metric = lambda x: torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2).clone()  # noqa: E731
    rm = S.RiemannianManifoldHMC(
        HarmonicModel(), metric, step_size=0.1, n_leapfrog_steps=2, dtype=dtype
    )
    with warnings.catch_warnings():  # the half-precision chains warning comes first
        warnings.simplefilter("ignore", RuntimeWarning)
        return rm.sample(x=X().to(dtype), n_steps=2)


def _ptcd(**options):
    model = MLPEnergy()
    return L.ParallelTemperingCD(model, S.LangevinDynamics(model, step_size=0.01), **options)


def _trainer(**kw):
    m = nn.Linear(2, 1)
    return L.BaseTrainer(
        m, torch.optim.SGD(m.parameters(), lr=0.1), lambda b: m(b).pow(2).mean(), **kw
    )


def _nan_row_samples():
    s = X()
    s[3] = NAN
    return s


ROWS = [
    # --- samplers
    (
        "S3-langevin-decay-bool",
        lambda: S.LangevinDynamics(HarmonicModel(), step_size=0.1, decay=True),
        TypeError,
        "decay",
    ),
    (
        "S5-langevin-clamp-nan-lower",
        lambda: S.LangevinDynamics(HarmonicModel(), step_size=0.1, clamp=(NAN, None)),
        ConfigurationError,
        r"clamp\[0\]",
    ),
    (
        "S5-langevin-clamp-nan-upper",
        lambda: S.LangevinDynamics(HarmonicModel(), step_size=0.1, clamp=(None, NAN)),
        ConfigurationError,
        r"clamp\[1\]",
    ),
    (
        "S6-hmc-mass-inf-at-construction",
        lambda: S.HamiltonianMonteCarlo(HarmonicModel(), step_size=0.1, mass=INF),
        ConfigurationError,
        "mass",
    ),
    (
        "S13-sample-n_samples-not-batch-of-x",
        lambda: S.LangevinDynamics(HarmonicModel(), step_size=0.1).sample(
            x=X(), n_samples=100, n_steps=2
        ),
        ShapeError,
        "n_samples",
    ),
    (
        "X9-rmhmc-float16-chains",
        lambda: _rmhmc(torch.float16),
        ConfigurationError,
        "float32 or float64",
    ),
    (
        "X9-rmhmc-bfloat16-chains",
        lambda: _rmhmc(torch.bfloat16),
        ConfigurationError,
        "float32 or float64",
    ),
    (
        "Y3-sample-dim-tuple-with-bool",
        lambda: S.LangevinDynamics(HarmonicModel(), step_size=0.1).sample(
            dim=(True, 2), n_samples=4, n_steps=2
        ),
        ConfigurationError,
        "dim",
    ),
    (
        "X2-sample-thin-above-n_steps",
        lambda: S.LangevinDynamics(HarmonicModel(), step_size=0.1).sample(
            x=X(), n_steps=3, thin=5, return_trajectory=True
        ),
        ConfigurationError,
        "thin",
    ),
    (
        "S15-ais-base_std-negative",
        lambda: S.AnnealedImportanceSampling(HarmonicModel(), base_std=-1.0),
        ConfigurationError,
        "base_std",
    ),
    (
        "S15-ais-base_std-zero",
        lambda: S.AnnealedImportanceSampling(HarmonicModel(), base_std=0.0),
        ConfigurationError,
        "base_std",
    ),
    (
        "S15-ais-base_std-inf",
        lambda: S.AnnealedImportanceSampling(HarmonicModel(), base_std=INF),
        ConfigurationError,
        "base_std",
    ),
    (
        "S16-ais-reverse-nan-samples",
        lambda: S.AnnealedImportanceSampling(HarmonicModel(), n_intermediate=3).reverse(
            _nan_row_samples()
        ),
        NonFiniteError,
        "samples",
    ),
    # --- losses
    (
        "L4-sm-regularization_strength-assigned-negative",
        lambda: _assign(L.ScoreMatching(MLPEnergy()), "regularization_strength", -5.0),
        ConfigurationError,
        "regularization_strength",
    ),
    (
        "L5-dsm-noise_scale-assigned-zero",
        lambda: _assign(L.DenoisingScoreMatching(MLPEnergy()), "noise_scale", 0.0),
        ConfigurationError,
        "noise_scale",
    ),
    (
        "L7-sm-fd_epsilon-negative",
        lambda: L.ScoreMatching(MLPEnergy(), hessian_method="approx", fd_epsilon=-1e-3),
        ConfigurationError,
        "fd_epsilon",
    ),
    (
        "L11-ptcd-base_temperature-negative",
        lambda: _ptcd(temperatures=(1.0, 2.0), base_temperature=-1.0),
        ConfigurationError,
        "base_temperature must be positive",
    ),
    (
        "X3-ptcd-temperatures-repeated",
        lambda: _ptcd(temperatures=(1.0, 1.0)),
        ConfigurationError,
        "temperatures must be strictly increasing",
    ),
    (
        "L12-eqm-dispersion_weight-negative",
        lambda: EquilibriumMatchingLoss(LinearField(), dispersion_weight=-0.5),
        ConfigurationError,
        "dispersion_weight",
    ),
    # --- models and training
    (
        "N3-dit-depth-negative",
        lambda: M.DiT(
            input_size=8, patch_size=4, in_channels=1, embed_dim=16, depth=-1, num_heads=2
        ),
        ConfigurationError,
        "depth",
    ),
    (
        "N3-dit-depth-float",
        lambda: M.DiT(
            input_size=8, patch_size=4, in_channels=1, embed_dim=16, depth=1.5, num_heads=2
        ),
        TypeError,
        "depth",
    ),
    (
        "N3-dit-depth-bool",
        lambda: M.DiT(
            input_size=8, patch_size=4, in_channels=1, embed_dim=16, depth=True, num_heads=2
        ),
        TypeError,
        "depth",
    ),
    (
        "B1-trainer-max_grad_norm-inf",
        lambda: _trainer(max_grad_norm=INF),
        ConfigurationError,
        "max_grad_norm",
    ),
    # --- metrics
    (
        "X5-mmd2-bandwidth-list-with-bool",
        lambda: mmd2(X(), X() + 1, bandwidth=[1.0, True]),
        TypeError,
        "bandwidth",
    ),
    (
        "X5-mmd2-bandwidth-list-with-str",
        lambda: mmd2(X(), X() + 1, bandwidth=["0.5"]),
        TypeError,
        "bandwidth",
    ),
    # --- interpolants
    (
        "I9-ve-sigma_max-equal-sigma_min",
        lambda: IP.VarianceExplodingInterpolant(sigma_min=1.0, sigma_max=1.0),
        ConfigurationError,
        "sigma_max",
    ),
    (
        "I2-adaptive-atol-rtol-both-zero",
        lambda: I.Dopri5Integrator(atol=0.0, rtol=0.0),
        ConfigurationError,
        "atol and rtol",
    ),
]


@pytest.mark.parametrize("call, exc, match", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_is_refused_with_a_named_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
