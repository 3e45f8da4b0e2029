"""One registry of test specs: every public sampler, loss and integrator, built on a small problem.

The shared suites read it: the sampler contract (``tests/samplers/test_contract.py``), the
loss contract (``tests/losses/test_contract.py``) and the registry rows
(``tests/integration/test_registry_rows.py``: coverage of every public class, determinism
under a seeded ``torch.Generator``, the ``nan_policy`` row and the validation row). A new
sampler, loss or integrator is covered by adding one entry here.

Each entry says how to build the object (``factory``), which model kind it runs on,
whether a seeded generator matters (``stochastic``), one bad argument with the error it
must raise (``bad``: ``(argument, value, error type)``; the message must name the argument)
and, for samplers and losses, whether the ``nan_policy`` row applies.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import torchebm.integrators as I
from _support.examples import load_example
from _support.losses import TinyLangevin
from torchebm.core import BaseModel, HarmonicModel
from torchebm.core.errors import ConfigurationError


def _installed(name: str) -> Any:
    """The module, or ``None`` in a piece's own venv where it is not a dependency."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        return None


# tests(torchebm-samplers) has no losses, tests(torchebm-losses) no samplers: their tables
# are empty there, and the suites that read them belong to the piece that has them
S = _installed("torchebm.samplers")
L = _installed("torchebm.losses")

__all__ = [
    "INTEGRATORS",
    "LOSSES",
    "SAMPLERS",
    "IntegratorSpec",
    "LossSpec",
    "SamplerSpec",
    "LinearField",
    "MLPEnergy",
    "analytic_model",
    "identity_metric",
    "neural_model",
]


# --------------------------------------------------------------------------- models


class MLPEnergy(BaseModel):
    """A small neural energy with a confining quadratic term (flat ``(B, d)`` states)."""

    def __init__(self, d: int = 2):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1) + 0.5 * x.square().sum(-1)


class LinearField(nn.Module):
    """``v(x, t) = -a x + t`` with a learnable ``a``: works for any event shape."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.5))

    def forward(self, x, t):
        return -self.a * x + t.reshape(-1, *([1] * (x.ndim - 1)))


class LossEnergy(BaseModel):
    """MLP energy whose output layer has no bias: score-matching objectives are invariant to
    an additive constant, so a final bias would (correctly) get no gradient from them."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.SiLU(), nn.Linear(16, 1, bias=False))

    def forward(self, x):
        return self.net(x).squeeze(-1)


class NaNEnergy(BaseModel):
    """``E = |x|^2 / 2`` times NaN: every energy and gradient is NaN (the nan_policy row)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))

    def forward(self, x, **kw):
        return 0.5 * (self.w * x * x).sum(-1) * math.nan


class NaNField(nn.Module):
    """A velocity field that is NaN everywhere (the nan_policy row of flows)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))

    def forward(self, x, t, **kw):
        return self.w * x * math.nan


def identity_metric(x):
    d = x[0].numel()
    return 2.0 * torch.eye(d, dtype=x.dtype, device=x.device).expand(x.shape[0], d, d)


def analytic_model(kind: str, **kw):
    return HarmonicModel(**kw) if kind == "energy" else LinearField()


def neural_model(kind: str):
    return MLPEnergy() if kind == "energy" else LinearField()


# --------------------------------------------------------------------------- samplers


@dataclass(frozen=True)
class SamplerSpec:
    """``factory(model, **kw)`` builds the sampler on a model of ``kind`` ("energy"/"flow")."""

    cls: type
    factory: Callable[..., Any]
    kind: str = "energy"
    stochastic: bool = True
    bad: tuple[str, Any, type[Exception]] = ("step_size", -1.0, ValueError)


def _rwm(m, **kw):
    return load_example("50_custom_sampler.py").RandomWalkMetropolis(m, **{"step_size": 0.5, **kw})


SAMPLERS: dict[str, SamplerSpec] = (
    {}
    if S is None
    else {
        "langevin": SamplerSpec(
            S.LangevinDynamics, lambda m, **kw: S.LangevinDynamics(m, **{"step_size": 0.05, **kw})
        ),
        "langevin_heun": SamplerSpec(
            S.LangevinDynamics,
            lambda m, **kw: S.LangevinDynamics(
                m, **{"step_size": 0.05, "integrator": "heun", **kw}
            ),
        ),
        "hmc": SamplerSpec(
            S.HamiltonianMonteCarlo,
            lambda m, **kw: S.HamiltonianMonteCarlo(
                m, **{"step_size": 0.1, "n_leapfrog_steps": 3, **kw}
            ),
        ),
        "rmhmc": SamplerSpec(
            S.RiemannianManifoldHMC,
            lambda m, **kw: S.RiemannianManifoldHMC(
                m, identity_metric, **{"step_size": 0.1, "n_leapfrog_steps": 2, **kw}
            ),
        ),
        "gd": SamplerSpec(
            S.GradientDescentSampler,
            lambda m, **kw: S.GradientDescentSampler(m, **{"step_size": 0.1, **kw}),
            stochastic=False,
        ),
        "gd_stop": SamplerSpec(
            S.GradientDescentSampler,
            lambda m, **kw: S.GradientDescentSampler(
                m, **{"step_size": 0.1, "grad_tol": 1e-3, **kw}
            ),
            stochastic=False,
        ),
        "nesterov": SamplerSpec(
            S.NesterovSampler,
            lambda m, **kw: S.NesterovSampler(m, **{"step_size": 0.1, "momentum": 0.5, **kw}),
            stochastic=False,
        ),
        "flow_ode": SamplerSpec(
            S.FlowSampler,
            lambda m, **kw: S.FlowSampler(m, **{"integrator": "heun", **kw}),
            kind="flow",
            stochastic=False,
            bad=("integrator", "nope", ValueError),
        ),
        "flow_ode_adaptive": SamplerSpec(
            S.FlowSampler,
            lambda m, **kw: S.FlowSampler(m, **kw),
            kind="flow",
            stochastic=False,
            bad=("mode", "nope", ValueError),
        ),
        "flow_sde": SamplerSpec(
            S.FlowSampler,
            lambda m, **kw: S.FlowSampler(m, **{"mode": "sde", **kw}),
            kind="flow",
            bad=("diffusion_norm", -1.0, ValueError),
        ),
        # the worked example of docs/contributing.md ("Adding a sampler")
        "rwm": SamplerSpec(object, _rwm),
    }
)


# --------------------------------------------------------------------------- losses


@dataclass(frozen=True)
class LossSpec:
    """``factory(model, **kw)`` builds the loss; ``model()`` the network it trains."""

    cls: type
    factory: Callable[..., Any]
    model: Callable[[], nn.Module] = LossEnergy
    nan_model: Callable[[], nn.Module] = NaNEnergy
    stochastic: bool = True
    bad: tuple[str, Any, type[Exception]] = ("nan_policy", "bogus", ValueError)
    contract: bool = True  # runs tests/losses/test_contract.py (energy losses)


def _cd(cls, **defaults):
    def make(model, **kw):
        return cls(model, TinyLangevin(model), k_steps=3, **{**defaults, **kw})

    return make


LOSSES: dict[str, LossSpec] = (
    {}
    if L is None
    else {
        "cd": LossSpec(L.ContrastiveDivergence, _cd(L.ContrastiveDivergence)),
        "cd-persistent": LossSpec(
            L.ContrastiveDivergence,
            _cd(L.ContrastiveDivergence, persistent=True, buffer_size=64),
            bad=("buffer_size", 0, ValueError),
        ),
        "pcd": LossSpec(
            L.PersistentContrastiveDivergence,
            _cd(L.PersistentContrastiveDivergence, buffer_size=64),
            bad=("new_sample_ratio", 2.0, ValueError),
        ),
        "ptcd": LossSpec(
            L.ParallelTemperingCD, _cd(L.ParallelTemperingCD, temperatures=(1.0, 2.0))
        ),
        # the worked example of docs/contributing.md ("Adding a loss") runs the same contract
        "logistic-cd": LossSpec(
            object, _cd(load_example("41_custom_loss.py").LogisticContrastiveDivergence)
        ),
        "sm-exact": LossSpec(
            L.ScoreMatching,
            lambda m, **kw: L.ScoreMatching(m, **kw),
            stochastic=False,
            bad=("hessian_method", "nope", ValueError),
        ),
        "sm-hutchinson": LossSpec(
            L.ScoreMatching, lambda m, **kw: L.ScoreMatching(m, hessian_method="hutchinson", **kw)
        ),
        "sm-approx": LossSpec(
            L.ScoreMatching, lambda m, **kw: L.ScoreMatching(m, hessian_method="approx", **kw)
        ),
        "ssm": LossSpec(
            L.SlicedScoreMatching, lambda m, **kw: L.SlicedScoreMatching(m, n_projections=2, **kw)
        ),
        "dsm": LossSpec(
            L.DenoisingScoreMatching,
            lambda m, **kw: L.DenoisingScoreMatching(m, **{"noise_scale": 0.1, **kw}),
            bad=("noise_scale", -0.1, ValueError),
        ),
        "flow-matching": LossSpec(
            L.FlowMatchingLoss,
            lambda m, **kw: L.FlowMatchingLoss(m, **kw),
            model=LinearField,
            nan_model=NaNField,
            contract=False,
        ),
        "eqm": LossSpec(
            L.EquilibriumMatchingLoss,
            lambda m, **kw: L.EquilibriumMatchingLoss(m, **kw),
            model=LinearField,
            nan_model=NaNField,
            contract=False,
        ),
        "energy-matching": LossSpec(
            L.EnergyMatchingLoss,
            lambda m, **kw: L.EnergyMatchingLoss(m, **{"lambda_cd": 0.0, **kw}),
            contract=False,
        ),
    }
)


# --------------------------------------------------------------------------- integrators


def _decay(x, t):
    return -x


def _ode(integ, n_steps, g):
    return integ.integrate({"x": torch.ones(4, 2)}, 0.1, n_steps, drift=_decay)


def _sde(integ, n_steps, g):
    x = torch.ones(4, 2)
    return integ.integrate({"x": x}, 0.1, n_steps, drift=_decay, noise_scale=1.0, generator=g)


def _leapfrog(integ, n_steps, g):
    state = {"x": torch.ones(4, 2), "p": torch.zeros(4, 2)}
    return integ.integrate(state, 0.1, n_steps, drift=_decay)


def _generalised_leapfrog(integ, n_steps, g):
    state = {"x": torch.ones(4, 2), "p": torch.zeros(4, 2)}
    return integ.integrate(
        state, 0.1, n_steps, force=lambda x, p, t: -x, velocity=lambda x, p, t: p
    )


@dataclass(frozen=True)
class IntegratorSpec:
    """``cls()`` on a small problem: ``run(integrator, n_steps, generator)`` returns a state."""

    cls: type
    run: Callable[[Any, Any, torch.Generator | None], dict]
    stochastic: bool = False
    bad: tuple[str, Any, type[Exception]] = ("n_steps", 0, ConfigurationError)


INTEGRATORS: dict[str, IntegratorSpec] = {
    "euler_maruyama": IntegratorSpec(I.EulerMaruyamaIntegrator, _sde, stochastic=True),
    "backward_euler_maruyama": IntegratorSpec(
        I.BackwardEulerMaruyamaIntegrator, _sde, stochastic=True
    ),
    "heun": IntegratorSpec(I.HeunIntegrator, _ode),
    "midpoint": IntegratorSpec(I.MidpointIntegrator, _ode),
    "rk4": IntegratorSpec(I.RK4Integrator, _ode),
    "rk438": IntegratorSpec(I.RK438Integrator, _ode),
    "bosh3": IntegratorSpec(I.Bosh3Integrator, _ode),
    "dopri5": IntegratorSpec(I.Dopri5Integrator, _ode),
    "dopri8": IntegratorSpec(I.Dopri8Integrator, _ode),
    "adaptive_heun": IntegratorSpec(I.AdaptiveHeunIntegrator, _ode),
    "leapfrog": IntegratorSpec(I.LeapfrogIntegrator, _leapfrog),
    "generalised_leapfrog": IntegratorSpec(I.GeneralisedLeapfrogIntegrator, _generalised_leapfrog),
}
