"""Table-driven input validation of every public constructor and call of every piece.

Each row is one bad input to one entry point. The call must raise the expected error
type (``ValueError``/``TypeError`` and their TorchEBM subclasses, ``NonFiniteError`` for
NaN input) and the message must name the argument and show the value received. Rows
that expose a defect of a piece are marked ``xfail(strict=True)`` with the bug named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import torch
from integration_helpers import DATASETS
from torch import nn

import torchebm.couplings as C
import torchebm.datasets as DS
import torchebm.integrators as I
import torchebm.interpolants as IP
import torchebm.losses as L
import torchebm.models as M
import torchebm.samplers as S
from torchebm.core import (
    AckleyModel,
    BaseModel,
    BaseTrainer,
    ConstantScheduler,
    CosineScheduler,
    DoubleWellModel,
    ExponentialDecayScheduler,
    GaussianModel,
    HarmonicModel,
    LinearScheduler,
    MultiStepScheduler,
    RastriginModel,
    RosenbrockModel,
    TemperatureScheduler,
    TorchEBMModule,
    WarmupScheduler,
    update_ema,
)
from torchebm.core import distributed as D
from torchebm.core.errors import NonFiniteError, ShapeError

NAN, INF = float("nan"), float("inf")
X = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))


@dataclass
class Case:
    id: str
    call: Callable[[], Any]
    exc: type[BaseException] | tuple[type[BaseException], ...]
    words: tuple[str, ...]
    bug: str | None = None
    marks: list = field(default_factory=list)


def H() -> HarmonicModel:
    return HarmonicModel()


class WrongShape(BaseModel):
    """Energy of shape (B, 1) instead of (B,)."""

    def forward(self, x):
        return (x**2).sum(-1, keepdim=True)


class NoGrad(BaseModel):
    """Energy that does not depend on x differentiably."""

    def forward(self, x):
        return torch.zeros(x.shape[0])


class Field(nn.Module):
    """Tiny vector field f(x, t) shaped like x."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x, t, **kw):
        return self.lin(x)


class Potential(nn.Module):
    """Tiny scalar potential V(x) -> (B,)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x, **kw):
        return self.lin(x).sum(-1)


def lang(**kw):
    return S.LangevinDynamics(H(), step_size=0.01, **kw)


def cd(**kw):
    m = Potential()
    return L.ContrastiveDivergence(m, S.LangevinDynamics(m, step_size=0.01), **kw)


def drift(x, t):
    return -x


def _numbers(name: str, ctor: Callable[[Any], Any], *, zero: bool = True, prefix: str = ""):
    """Non-positive / non-finite / non-numeric values of a positive hyper-parameter."""
    vals = [-0.01, NAN, INF] + ([0.0] if zero else [])
    out = [
        Case(f"{prefix}{name}={v}", (lambda v=v: ctor(v)), ValueError, (name, repr(v)))
        for v in vals
    ]
    out.append(Case(f"{prefix}{name}='a'", lambda: ctor("a"), TypeError, (name, "'a'")))
    return out


def sample_cases(name: str, make: Callable[[], Any]) -> list[Case]:
    """Bad arguments of ``sample()`` shared by every MCMC/descent sampler."""
    s = lambda **kw: make().sample(**kw)  # noqa: E731
    return [
        Case(
            f"{name}.sample(n_steps=-1)", lambda: s(x=X, n_steps=-1), ValueError, ("n_steps", "-1")
        ),
        Case(f"{name}.sample(n_steps=0)", lambda: s(x=X, n_steps=0), ValueError, ("n_steps", "0")),
        Case(
            f"{name}.sample(n_steps=1.5)",
            lambda: s(x=X, n_steps=1.5),
            TypeError,
            ("n_steps", "1.5"),
        ),
        Case(
            f"{name}.sample(thin=0)", lambda: s(x=X, n_steps=2, thin=0), ValueError, ("thin", "0")
        ),
        Case(
            f"{name}.sample(n_samples=0)",
            lambda: s(dim=2, n_steps=2, n_samples=0),
            ValueError,
            ("n_samples", "0"),
        ),
        Case(
            f"{name}.sample(x=empty)",
            lambda: s(x=torch.zeros(0, 2), n_steps=2),
            ValueError,
            ("x", "(0, 2)"),
        ),
        Case(
            f"{name}.sample(x=1-D)",
            lambda: s(x=torch.zeros(2), n_steps=2),
            ValueError,
            ("x", "(2,)"),
        ),
        Case(
            f"{name}.sample(x=list)", lambda: s(x=[[0.0, 1.0]], n_steps=2), TypeError, ("x", "list")
        ),
        Case(
            f"{name}.sample(dim mismatch)",
            lambda: s(x=X, dim=3, n_steps=2),
            ValueError,
            ("dim", "3"),
        ),
        Case(f"{name}.sample(dim=0)", lambda: s(dim=0, n_steps=2), ValueError, ("dim", "0")),
        Case(
            f"{name}.sample(generator=1)",
            lambda: s(x=X, n_steps=2, generator=1),
            TypeError,
            ("generator", "int"),
        ),
        Case(
            f"{name}.sample(nan_policy)",
            lambda: s(x=X, n_steps=2, nan_policy="mask"),
            ValueError,
            ("nan_policy", "mask"),
        ),
        Case(
            f"{name}.sample(x=NaN)",
            lambda: s(x=torch.tensor([[0.0, NAN]]), n_steps=2),
            NonFiniteError,
            ("x", "[0]"),
        ),
        Case(
            f"{name}.sample(model_kwargs=[])",
            lambda: s(x=X, n_steps=2, model_kwargs=[1]),
            TypeError,
            ("model_kwargs", "list"),
        ),
    ]


def _ctor_cases() -> list[Case]:
    c: list[Case] = []
    # ------------------------------------------------------------------ core
    c += [
        Case(
            "TorchEBMModule(dtype='float')",
            lambda: TorchEBMModule(dtype="float"),
            TypeError,
            ("dtype", "'float'"),
        ),
        Case(
            "GaussianModel(mean 2-D)",
            lambda: GaussianModel(torch.zeros(2, 2), torch.eye(2)),
            ValueError,
            ("mean", "(2, 2)"),
        ),
        Case(
            "GaussianModel(cov not square)",
            lambda: GaussianModel(torch.zeros(2), torch.ones(2, 3)),
            ValueError,
            ("cov", "(2, 3)"),
        ),
        Case(
            "GaussianModel(dim mismatch)",
            lambda: GaussianModel(torch.zeros(3), torch.eye(2)),
            ValueError,
            ("cov", "3"),
        ),
        Case(
            "GaussianModel(singular)",
            lambda: GaussianModel(torch.zeros(2), torch.zeros(2, 2)),
            ValueError,
            ("cov",),
        ),
        Case(
            "GaussianModel(mean nan)",
            lambda: GaussianModel(torch.tensor([NAN, 0.0]), torch.eye(2)),
            ValueError,
            ("mean", "nan"),
        ),
        Case(
            "GaussianModel(cov indefinite)",
            lambda: GaussianModel(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]])),
            ValueError,
            ("cov", "positive definite", "2."),
        ),
        Case("HarmonicModel(k=0)", lambda: HarmonicModel(k=0.0), ValueError, ("k", "0")),
        Case("DoubleWellModel(b=nan)", lambda: DoubleWellModel(b=NAN), ValueError, ("b", "nan")),
        Case("RastriginModel(a=-1)", lambda: RastriginModel(a=-1.0), ValueError, ("a", "-1")),
        Case("AckleyModel(b=0)", lambda: AckleyModel(b=0.0), ValueError, ("b", "0")),
        Case("RosenbrockModel(b=inf)", lambda: RosenbrockModel(b=INF), ValueError, ("b", "inf")),
        Case(
            "GaussianModel.forward(3-D)",
            lambda: GaussianModel(torch.zeros(2), torch.eye(2))(torch.zeros(1, 2, 2)),
            ValueError,
            ("x", "(1, 2, 2)"),
        ),
        Case(
            "RosenbrockModel(dim 1)",
            lambda: RosenbrockModel()(torch.zeros(3, 1)),
            ValueError,
            ("x", "(3, 1)"),
        ),
        Case(
            "BaseModel.gradient(wrong energy shape)",
            lambda: WrongShape().gradient(X),
            ValueError,
            ("(B,)", "(4, 1)"),
        ),
        Case(
            "ConstantScheduler('a')",
            lambda: ConstantScheduler("a"),
            TypeError,
            ("start_value", "'a'"),
        ),
        Case(
            "ConstantScheduler(nan)",
            lambda: ConstantScheduler(NAN),
            ValueError,
            ("start_value", "nan"),
        ),
        Case(
            "ExponentialDecayScheduler(decay_rate=0)",
            lambda: ExponentialDecayScheduler(1.0, 0.0),
            ValueError,
            ("decay_rate", "0"),
        ),
        Case(
            "ExponentialDecayScheduler(decay_rate=1.5)",
            lambda: ExponentialDecayScheduler(1.0, 1.5),
            ValueError,
            ("decay_rate", "1.5"),
        ),
        Case(
            "ExponentialDecayScheduler(min_value=-1)",
            lambda: ExponentialDecayScheduler(1.0, 0.5, -1.0),
            ValueError,
            ("min_value", "-1"),
        ),
        Case(
            "LinearScheduler(n_steps=0)",
            lambda: LinearScheduler(1.0, 0.0, 0),
            ValueError,
            ("n_steps", "0"),
        ),
        Case(
            "CosineScheduler(n_steps=-2)",
            lambda: CosineScheduler(1.0, 0.0, -2),
            ValueError,
            ("n_steps", "-2"),
        ),
        Case(
            "MultiStepScheduler(milestones decreasing)",
            lambda: MultiStepScheduler(1.0, [3, 2]),
            ValueError,
            ("milestones", "[3, 2]"),
        ),
        Case(
            "MultiStepScheduler(milestone 0)",
            lambda: MultiStepScheduler(1.0, [0, 2]),
            ValueError,
            ("milestones", "0"),
        ),
        Case(
            "WarmupScheduler(main=3)",
            lambda: WarmupScheduler(3, 2),
            TypeError,
            ("main_scheduler", "int"),
        ),
        Case(
            "WarmupScheduler(warmup_steps=-1)",
            lambda: WarmupScheduler(ConstantScheduler(1.0), -1),
            ValueError,
            ("warmup_steps", "-1"),
        ),
        Case(
            "TemperatureScheduler(tau_star=1)",
            lambda: TemperatureScheduler(0.1, tau_star=1.0),
            ValueError,
            ("tau_star", "1.0"),
        ),
        Case(
            "TemperatureScheduler(epsilon_max=-1)",
            lambda: TemperatureScheduler(-1.0),
            ValueError,
            ("epsilon_max", "-1"),
        ),
        Case(
            "TemperatureScheduler(t_end<t_start)",
            lambda: TemperatureScheduler(0.1, t_start=1.0, t_end=0.5),
            ValueError,
            ("t_end", "0.5"),
        ),
        Case(
            "update_ema(decay=2)",
            lambda: update_ema(nn.Linear(1, 1), nn.Linear(1, 1), 2.0),
            ValueError,
            ("decay", "2.0"),
        ),
        Case("rank_generator(seed=-1)", lambda: D.rank_generator(-1), ValueError, ("seed", "-1")),
        Case("all_gather_cat(x=list)", lambda: D.all_gather_cat([1.0]), TypeError, ("x", "list")),
    ]
    m = nn.Linear(2, 1)
    opt = lambda: torch.optim.SGD(m.parameters(), lr=0.1)  # noqa: E731
    c += [
        Case(
            "BaseTrainer(grad_accum_steps=0)",
            lambda: BaseTrainer(m, opt(), lambda x: m(x).mean(), grad_accum_steps=0),
            ValueError,
            ("grad_accum_steps", "0"),
        ),
        Case(
            "BaseTrainer(optimizer=None)",
            lambda: BaseTrainer(m, None, lambda x: x),
            TypeError,
            ("optimizer", "NoneType"),
        ),
        Case(
            "ContrastiveDivergenceTrainer(model=str)",
            lambda: L.ContrastiveDivergenceTrainer("net", None),
            TypeError,
            ("model", "str"),
        ),
        Case(
            "ContrastiveDivergenceTrainer(learning_rate=-1)",
            lambda: L.ContrastiveDivergenceTrainer(m, None, learning_rate=-1.0),
            ValueError,
            ("learning_rate", "-1"),
        ),
        Case(
            "BaseTrainer(max_grad_norm=0)",
            lambda: BaseTrainer(m, opt(), lambda x: x, max_grad_norm=0.0),
            ValueError,
            ("max_grad_norm", "0.0"),
        ),
        Case(
            "BaseTrainer.train_step(empty)",
            lambda: BaseTrainer(m, opt(), lambda x: m(x).mean()).train_step(torch.zeros(0, 2)),
            ValueError,
            ("batch", "(0, 2)"),
        ),
        Case(
            "BaseTrainer.train(num_epochs=-1)",
            lambda: BaseTrainer(m, opt(), lambda x: m(x).mean()).train([], -1),
            ValueError,
            ("num_epochs", "-1"),
        ),
    ]
    # ------------------------------------------------------------------ samplers
    c += _numbers(
        "step_size", lambda v: S.LangevinDynamics(H(), step_size=v), prefix="LangevinDynamics "
    )
    c += _numbers(
        "noise_scale", lambda v: S.LangevinDynamics(H(), noise_scale=v), prefix="LangevinDynamics "
    )
    c += [
        Case(
            "LangevinDynamics(clamp=(1, 0))",
            lambda: S.LangevinDynamics(H(), clamp=(1.0, 0.0)),
            ValueError,
            ("clamp", "(1.0, 0.0)"),
        ),
        Case(
            "LangevinDynamics(integrator='rk4')",
            lambda: S.LangevinDynamics(H(), integrator="rk4"),
            TypeError,
            ("LangevinDynamics", "RK4Integrator"),
        ),
        Case(
            "LangevinDynamics(integrator='nope')",
            lambda: S.LangevinDynamics(H(), integrator="nope"),
            ValueError,
            ("nope",),
        ),
        Case(
            "LangevinDynamics(model=None)",
            lambda: S.LangevinDynamics(None),
            TypeError,
            ("model", "None"),
        ),
    ]
    c += _numbers(
        "step_size",
        lambda v: S.HamiltonianMonteCarlo(H(), step_size=v),
        prefix="HamiltonianMonteCarlo ",
    )
    c += [
        Case(
            "HamiltonianMonteCarlo(n_leapfrog_steps=0)",
            lambda: S.HamiltonianMonteCarlo(H(), n_leapfrog_steps=0),
            ValueError,
            ("n_leapfrog_steps", "0"),
        ),
        Case(
            "HamiltonianMonteCarlo(n_leapfrog_steps=2.5)",
            lambda: S.HamiltonianMonteCarlo(H(), n_leapfrog_steps=2.5),
            TypeError,
            ("n_leapfrog_steps", "2.5"),
        ),
        Case(
            "HamiltonianMonteCarlo(mass=-1)",
            lambda: S.HamiltonianMonteCarlo(H(), mass=-1.0),
            ValueError,
            ("mass", "-1"),
        ),
        Case(
            "HamiltonianMonteCarlo(integrator='heun')",
            lambda: S.HamiltonianMonteCarlo(H(), integrator="heun"),
            TypeError,
            ("HamiltonianMonteCarlo", "HeunIntegrator"),
        ),
        Case(
            "RiemannianManifoldHMC(metric_fn=3)",
            lambda: S.RiemannianManifoldHMC(H(), 3),
            TypeError,
            ("metric_fn", "int"),
        ),
        Case(
            "RiemannianManifoldHMC(n_leapfrog_steps=0)",
            lambda: S.RiemannianManifoldHMC(
                H(), lambda x: torch.eye(2).expand(x.shape[0], 2, 2), n_leapfrog_steps=0
            ),
            ValueError,
            ("n_leapfrog_steps", "0"),
        ),
    ]
    c += _numbers(
        "step_size",
        lambda v: S.GradientDescentSampler(H(), step_size=v),
        prefix="GradientDescentSampler ",
    )
    c += [
        Case(
            "NesterovSampler(momentum=1.0)",
            lambda: S.NesterovSampler(H(), momentum=1.0),
            ValueError,
            ("momentum", "1.0"),
        ),
        Case(
            "NesterovSampler(momentum=-0.1)",
            lambda: S.NesterovSampler(H(), momentum=-0.1),
            ValueError,
            ("momentum", "-0.1"),
        ),
        Case(
            "FlowSampler(mode='bad')",
            lambda: S.FlowSampler(Field(), mode="bad"),
            ValueError,
            ("mode", "bad"),
        ),
        Case(
            "FlowSampler(prediction='bad')",
            lambda: S.FlowSampler(Field(), prediction="bad"),
            ValueError,
            ("prediction", "bad"),
        ),
        Case(
            "FlowSampler(interpolant='bad')",
            lambda: S.FlowSampler(Field(), interpolant="bad"),
            ValueError,
            ("bad",),
        ),
        Case(
            "FlowSampler(interpolant=3)",
            lambda: S.FlowSampler(Field(), interpolant=3),
            TypeError,
            ("interpolant", "int"),
        ),
        Case(
            "FlowSampler(ode + diffusion_form)",
            lambda: S.FlowSampler(Field(), diffusion_form="sigma"),
            ValueError,
            ("diffusion_form", "sde"),
        ),
        Case(
            "FlowSampler(sde + reverse)",
            lambda: S.FlowSampler(Field(), mode="sde", reverse=True),
            ValueError,
            ("reverse",),
        ),
        Case(
            "FlowSampler(last_step='bad')",
            lambda: S.FlowSampler(Field(), mode="sde", last_step="bad"),
            ValueError,
            ("last_step", "bad"),
        ),
        Case(
            "FlowSampler(sde + integrator='rk4')",
            lambda: S.FlowSampler(Field(), mode="sde", integrator="rk4"),
            TypeError,
            ("RK4Integrator",),
        ),
        Case(
            "FlowSampler.sample(n_steps=0)",
            lambda: S.FlowSampler(Field(), integrator="euler").sample(x=X, n_steps=0),
            ValueError,
            ("n_steps", "0"),
        ),
        Case(
            "FlowSampler.sample(x=empty)",
            lambda: S.FlowSampler(Field(), integrator="euler").sample(
                x=torch.zeros(0, 2), n_steps=2
            ),
            ValueError,
            ("x", "(0, 2)"),
        ),
        Case(
            "FlowSampler.sample(num_steps=)",
            lambda: S.FlowSampler(Field(), integrator="euler").sample(x=X, num_steps=2),
            TypeError,
            ("num_steps",),
        ),
    ]
    for name, make in [
        ("LangevinDynamics", lambda: S.LangevinDynamics(H(), step_size=0.01)),
        ("HamiltonianMonteCarlo", lambda: S.HamiltonianMonteCarlo(H(), step_size=0.1)),
        ("GradientDescentSampler", lambda: S.GradientDescentSampler(H(), step_size=0.1)),
        ("NesterovSampler", lambda: S.NesterovSampler(H(), step_size=0.1)),
    ]:
        c += sample_cases(name, make)
    c += [
        Case(
            "LangevinDynamics.sample(model energy (B,1))",
            lambda: S.LangevinDynamics(WrongShape(), step_size=0.01).sample(x=X, n_steps=2),
            ValueError,
            ("(B,)", "(4, 1)"),
        ),
        Case(
            "HamiltonianMonteCarlo.sample(model energy (B,1))",
            lambda: S.HamiltonianMonteCarlo(WrongShape(), step_size=0.1).sample(x=X, n_steps=2),
            ValueError,
            ("(B,)", "(4, 1)"),
        ),
        Case(
            "LangevinDynamics.sample(model without gradient)",
            lambda: S.LangevinDynamics(NoGrad(), step_size=0.01).sample(x=X, n_steps=2),
            RuntimeError,  # BaseModel.gradient: a defect of the model, not of an argument
            ("NoGrad", "differentiabl"),
        ),
    ]
    # ------------------------------------------------------------------ integrators
    em = I.EulerMaruyamaIntegrator()
    rk4 = I.RK4Integrator()
    st = {"x": X.clone()}
    c += [
        Case(
            "get_integrator('nope')",
            lambda: I.get_integrator("nope"),
            ValueError,
            ("nope", "euler"),
        ),
        Case("get_integrator(3)", lambda: I.get_integrator(3), (ValueError, TypeError), ("3",)),
        Case(
            "EulerMaruyamaIntegrator.step(drift missing)",
            lambda: em.step(st, 0.1),
            (ValueError, TypeError),
            ("drift",),
        ),
        Case(
            "EulerMaruyamaIntegrator.integrate(n_steps=0)",
            lambda: em.integrate(st, 0.1, 0, drift=drift),
            ValueError,
            ("n_steps", "0"),
        ),
        Case(
            "RK4Integrator.integrate(n_steps=-1)",
            lambda: rk4.integrate(st, 0.1, -1, drift=drift),
            ValueError,
            ("n_steps", "-1"),
        ),
        Case(
            "RK4Integrator.integrate(t 2-D)",
            lambda: rk4.integrate(st, 0.1, 2, drift=drift, t=torch.zeros(2, 2)),
            ValueError,
            ("t",),
        ),
        Case(
            "RK4Integrator.integrate(t length 1)",
            lambda: rk4.integrate(st, 0.1, 2, drift=drift, t=torch.zeros(1)),
            ValueError,
            ("t", "2"),
        ),
        Case(
            "RK4Integrator.integrate(adaptive=True)",
            lambda: rk4.integrate(st, 0.1, 2, drift=drift, adaptive=True),
            ValueError,
            ("adaptive",),
        ),
        Case(
            "Dopri5.integrate(adaptive + noise)",
            lambda: I.Dopri5Integrator().integrate(
                st, 0.1, 2, drift=drift, adaptive=True, noise_scale=1.0
            ),
            (ValueError, TypeError),
            ("noise_scale",),
        ),
        Case(
            "EulerMaruyamaIntegrator.step(step_size=nan)",
            lambda: em.step(st, NAN, drift=drift),
            ValueError,
            ("step_size", "nan"),
        ),
        Case(
            "EulerMaruyamaIntegrator.step(state x list)",
            lambda: em.step({"x": [1.0]}, 0.1, drift=drift),
            TypeError,
            ("x", "list"),
        ),
        Case(
            "EulerMaruyamaIntegrator.step(state missing x)",
            lambda: em.step({"y": X}, 0.1, drift=drift),
            (ValueError, TypeError),
            ("'x'", "['y']"),
        ),
        Case(
            "EulerMaruyamaIntegrator.step(noise_scale=-1)",
            lambda: em.step(st, 0.1, drift=drift, noise_scale=-1.0),
            ValueError,
            ("noise_scale", "-1"),
        ),
        Case(
            "EulerMaruyamaIntegrator(dtype='x')",
            lambda: I.EulerMaruyamaIntegrator(dtype="x"),
            TypeError,
            ("dtype", "'x'"),
        ),
        Case(
            "RK4Integrator.step(step_size=inf)",
            lambda: rk4.step(st, INF, drift=drift),
            ValueError,
            ("step_size", "inf"),
        ),
        Case(
            "LeapfrogIntegrator.step(mass=-1)",
            lambda: I.LeapfrogIntegrator().step({"x": X, "p": X}, 0.1, mass=-1.0, drift=drift),
            ValueError,
            ("mass", "-1"),
        ),
        Case(
            "LeapfrogIntegrator.step(p missing)",
            lambda: I.LeapfrogIntegrator().step({"x": X}, 0.1, drift=drift),
            (ValueError, TypeError),
            ("'p'",),
        ),
        Case(
            "Dopri5Integrator(atol=-1)",
            lambda: I.Dopri5Integrator(atol=-1.0),
            ValueError,
            ("atol", "-1"),
        ),
        Case(
            "Dopri5Integrator(max_steps=0)",
            lambda: I.Dopri5Integrator(max_steps=0),
            ValueError,
            ("max_steps", "0"),
        ),
        Case(
            "LeapfrogIntegrator.integrate(n_steps=0)",
            lambda: I.LeapfrogIntegrator().integrate({"x": X, "p": X}, 0.1, 0, drift=drift),
            ValueError,
            ("n_steps", "0"),
        ),
        Case(
            "GeneralisedLeapfrogIntegrator(solver_max_iter=0)",
            lambda: I.GeneralisedLeapfrogIntegrator(solver_max_iter=0),
            ValueError,
            ("solver_max_iter", "0"),
        ),
        Case(
            "GeneralisedLeapfrogIntegrator.step(force missing)",
            lambda: I.GeneralisedLeapfrogIntegrator().step(
                {"x": X, "p": X}, 0.1, velocity=lambda x, p, t: p
            ),
            (ValueError, TypeError),
            ("force",),
        ),
    ]
    # ------------------------------------------------------------------ interpolants
    lin = IP.LinearInterpolant()
    c += [
        Case(
            "get_interpolant('nope')",
            lambda: IP.get_interpolant("nope"),
            ValueError,
            ("nope", "linear"),
        ),
        Case(
            "resolve_interpolant(3)",
            lambda: IP.resolve_interpolant(3, default="linear", owner="Test"),
            TypeError,
            ("Test", "int"),
        ),
        Case(
            "LinearInterpolant.compute_diffusion(form='bad')",
            lambda: lin.compute_diffusion(X, torch.rand(4), form="bad"),
            ValueError,
            ("form", "bad", "SBDM"),
        ),
        Case(
            "VariancePreservingInterpolant(sigma_min=-1)",
            lambda: IP.VariancePreservingInterpolant(sigma_min=-1.0),
            ValueError,
            ("sigma_min", "-1"),
        ),
        Case(
            "VariancePreservingInterpolant(sigma_max<sigma_min)",
            lambda: IP.VariancePreservingInterpolant(sigma_min=2.0, sigma_max=1.0),
            ValueError,
            ("sigma_max", "1.0"),
        ),
        Case(
            "LinearInterpolant.interpolate(shape mismatch)",
            lambda: lin.interpolate(X, torch.zeros(4, 3), torch.rand(4)),
            ValueError,
            ("x1", "(4, 3)"),
        ),
        Case(
            "LinearInterpolant.interpolate(t shape)",
            lambda: lin.interpolate(X, X, torch.rand(3)),
            ValueError,
            ("t", "(3,)"),
        ),
    ]
    # ------------------------------------------------------------------ couplings
    c += [
        Case(
            "get_coupling('nope')",
            lambda: C.get_coupling("nope"),
            ValueError,
            ("nope", "independent"),
        ),
        Case(
            "SinkhornCoupling(reg=0)", lambda: C.SinkhornCoupling(reg=0.0), ValueError, ("reg", "0")
        ),
        Case(
            "SinkhornCoupling(n_iters=0)",
            lambda: C.SinkhornCoupling(n_iters=0),
            ValueError,
            ("n_iters", "0"),
        ),
        Case(
            "UnbalancedSinkhornCoupling(reg_marginal=-1)",
            lambda: C.UnbalancedSinkhornCoupling(reg_marginal=-1.0),
            ValueError,
            ("reg_marginal", "-1"),
        ),
        Case(
            "ExactOTCoupling(tol=0)", lambda: C.ExactOTCoupling(tol=0.0), ValueError, ("tol", "0")
        ),
        Case(
            "ExactOTCoupling(process_group=3)",
            lambda: C.ExactOTCoupling(process_group=3),
            (ValueError, TypeError),
            ("process_group",),
        ),
        Case(
            "GreedyCoupling(process_group=...)",
            lambda: C.GreedyCoupling(process_group=object()),
            (ValueError, TypeError),
            ("process_group",),
        ),
        Case(
            "ReflowCoupling(n_steps=0)",
            lambda: C.ReflowCoupling(lambda x: x, n_steps=0),
            ValueError,
            ("n_steps", "0"),
        ),
        Case(
            "ExactOTCoupling(unequal batches)",
            lambda: C.ExactOTCoupling()(X, torch.zeros(3, 2)),
            ValueError,
            ("batch", "4", "3"),
        ),
        Case(
            "ExactOTCoupling(x1=None)", lambda: C.ExactOTCoupling()(X), ValueError, ("x1", "None")
        ),
        Case(
            "IndependentCoupling(x0 list)",
            lambda: C.IndependentCoupling()([1.0], X),
            TypeError,
            ("x0", "list"),
        ),
    ]
    # ------------------------------------------------------------------ losses
    c += [
        Case(
            "ContrastiveDivergence(k_steps=0)", lambda: cd(k_steps=0), ValueError, ("k_steps", "0")
        ),
        Case(
            "ContrastiveDivergence(buffer_size=0)",
            lambda: cd(persistent=True, buffer_size=0),
            ValueError,
            ("buffer_size", "0"),
        ),
        Case(
            "ContrastiveDivergence(new_sample_ratio=1.5)",
            lambda: cd(new_sample_ratio=1.5),
            ValueError,
            ("new_sample_ratio", "1.5"),
        ),
        Case(
            "ContrastiveDivergence(energy_reg_weight=-1)",
            lambda: cd(energy_reg_weight=-1.0),
            ValueError,
            ("energy_reg_weight", "-1"),
        ),
        Case(
            "ContrastiveDivergence(noise_scale=nan)",
            lambda: cd(noise_scale=NAN),
            ValueError,
            ("noise_scale", "nan"),
        ),
        Case(
            "ContrastiveDivergence(sampler=None)",
            lambda: L.ContrastiveDivergence(Potential(), None),
            TypeError,
            ("sampler", "None"),
        ),
        Case(
            "ContrastiveDivergence(nan_policy='mask')",
            lambda: cd(nan_policy="mask"),
            ValueError,
            ("nan_policy", "mask"),
        ),
        Case(
            "ContrastiveDivergence(x=empty)",
            lambda: cd()(torch.zeros(0, 2)),
            ValueError,
            ("x", "(0, 2)"),
        ),
        Case(
            "ContrastiveDivergence(x=int)",
            lambda: cd()(torch.zeros(4, 2, dtype=torch.long)),
            TypeError,
            ("x", "int64"),
        ),
        Case(
            "ContrastiveDivergence(x=1-D)", lambda: cd()(torch.zeros(4)), ValueError, ("x", "(4,)")
        ),
        Case(
            "ContrastiveDivergence(model energy (B,1))",
            lambda: L.ContrastiveDivergence(
                WrongShape(), S.LangevinDynamics(H(), step_size=0.01), k_steps=1
            )(X),
            ValueError,
            ("(B,)", "(4, 1)"),
        ),
        Case(
            "PersistentContrastiveDivergence(buffer_size=-5)",
            lambda: L.PersistentContrastiveDivergence(
                Potential(), S.LangevinDynamics(H()), buffer_size=-5
            ),
            ValueError,
            ("buffer_size", "-5"),
        ),
        Case(
            "ParallelTemperingCD(temperatures decreasing)",
            lambda: L.ParallelTemperingCD(
                Potential(), S.LangevinDynamics(H()), temperatures=(1.0, 0.5)
            ),
            ValueError,
            ("temperatures", "0.5"),
        ),
        Case(
            "ParallelTemperingCD(swap_every=0)",
            lambda: L.ParallelTemperingCD(Potential(), S.LangevinDynamics(H()), swap_every=0),
            ValueError,
            ("swap_every", "0"),
        ),
        Case(
            "ScoreMatching(hessian_method='bad')",
            lambda: L.ScoreMatching(Potential(), hessian_method="bad"),
            ValueError,
            ("hessian_method", "bad"),
        ),
        Case(
            "SlicedScoreMatching(n_projections=0)",
            lambda: L.SlicedScoreMatching(Potential(), n_projections=0),
            ValueError,
            ("n_projections", "0"),
        ),
        Case(
            "SlicedScoreMatching(projection_type='bad')",
            lambda: L.SlicedScoreMatching(Potential(), projection_type="bad"),
            ValueError,
            ("projection_type", "bad"),
        ),
        Case(
            "DenoisingScoreMatching(x=empty)",
            lambda: L.DenoisingScoreMatching(Potential())(torch.zeros(0, 2)),
            ValueError,
            ("x", "(0, 2)"),
        ),
        Case("ScoreMatching(model=None)", lambda: L.ScoreMatching(None), TypeError, ("NoneType",)),
    ]
    c += _numbers(
        "noise_scale",
        lambda v: L.DenoisingScoreMatching(Potential(), noise_scale=v),
        prefix="DenoisingScoreMatching ",
    )
    c += _numbers(
        "regularization_strength",
        lambda v: L.DenoisingScoreMatching(Potential(), regularization_strength=v),
        zero=False,
        prefix="DenoisingScoreMatching ",
    )
    c += [
        Case(
            "EquilibriumMatchingLoss(prediction='bad')",
            lambda: L.EquilibriumMatchingLoss(Field(), prediction="bad"),
            ValueError,
            ("prediction", "bad"),
        ),
        Case(
            "EquilibriumMatchingLoss(energy_type='bad')",
            lambda: L.EquilibriumMatchingLoss(Field(), energy_type="bad"),
            ValueError,
            ("energy_type", "bad"),
        ),
        Case(
            "EquilibriumMatchingLoss(interpolant='bad')",
            lambda: L.EquilibriumMatchingLoss(Field(), interpolant="bad"),
            ValueError,
            ("bad",),
        ),
        Case(
            "EquilibriumMatchingLoss(coupling='bad')",
            lambda: L.EquilibriumMatchingLoss(Field(), coupling="bad"),
            ValueError,
            ("bad",),
        ),
        Case(
            "EquilibriumMatchingLoss(train_eps=-0.1)",
            lambda: L.EquilibriumMatchingLoss(Field(), train_eps=-0.1),
            ValueError,
            ("train_eps", "-0.1"),
        ),
        Case(
            "EquilibriumMatchingLoss(x0 shape)",
            lambda: L.EquilibriumMatchingLoss(Field())(X, x0=torch.zeros(3, 2)),
            ValueError,
            ("x0", "(3, 2)"),
        ),
        Case(
            "EquilibriumMatchingLoss(x=empty)",
            lambda: L.EquilibriumMatchingLoss(Field())(torch.zeros(0, 2)),
            ValueError,
            ("x", "(0, 2)"),
        ),
        Case(
            "EnergyMatchingLoss(noise_fraction=1.5)",
            lambda: L.EnergyMatchingLoss(Potential(), noise_fraction=1.5),
            ValueError,
            ("noise_fraction", "1.5"),
        ),
        Case(
            "EnergyMatchingLoss(cd_trim_fraction=1.0)",
            lambda: L.EnergyMatchingLoss(Potential(), cd_trim_fraction=1.0),
            ValueError,
            ("cd_trim_fraction", "1.0"),
        ),
        Case(
            "EnergyMatchingLoss(cd_clamp=-1)",
            lambda: L.EnergyMatchingLoss(Potential(), cd_clamp=-1.0),
            ValueError,
            ("cd_clamp", "-1"),
        ),
        Case(
            "EnergyMatchingLoss(langevin_dt=0)",
            lambda: L.EnergyMatchingLoss(Potential(), langevin_dt=0.0),
            ValueError,
            ("langevin_dt", "0"),
        ),
        Case(
            "EnergyMatchingLoss(sigma=-1)",
            lambda: L.EnergyMatchingLoss(Potential(), sigma=-1.0),
            ValueError,
            ("sigma", "-1"),
        ),
        Case(
            "EnergyMatchingLoss(n_langevin_steps=0)",
            lambda: L.EnergyMatchingLoss(Potential(), n_langevin_steps=0),
            ValueError,
            ("n_langevin_steps", "0"),
        ),
        Case(
            "EnergyMatchingLoss(x0 shape)",
            lambda: L.EnergyMatchingLoss(Potential(), lambda_cd=0.0)(X, x0=torch.zeros(3, 2)),
            ValueError,
            ("x0", "(3, 2)"),
        ),
        Case(
            "trimmed_mean(trim_fraction=1)",
            lambda: L.trimmed_mean(torch.ones(4), 1.0),
            ValueError,
            ("trim_fraction", "1.0"),
        ),
        Case(
            "EquilibriumMatchingLoss(ct_multiplier=-1)",
            lambda: L.EquilibriumMatchingLoss(Field(), ct_multiplier=-1.0),
            ValueError,
            ("ct_multiplier", "-1"),
        ),
    ]
    # ------------------------------------------------------------------ models
    c += [
        Case(
            "ConditionalTransformer2D(input_size % patch_size)",
            lambda: M.ConditionalTransformer2D(
                in_channels=1,
                out_channels=1,
                input_size=6,
                patch_size=4,
                embed_dim=8,
                depth=1,
                num_heads=2,
            ),
            ValueError,
            ("input_size", "6", "4"),
        ),
        Case(
            "EqMEnergy(energy_type='bad')",
            lambda: M.EqMEnergy(Field(), energy_type="bad"),
            ValueError,
            ("energy_type", "bad"),
        ),
        Case(
            "InteractionModel(sigma_w=0)",
            lambda: M.InteractionModel(H(), sigma_w=0.0),
            ValueError,
            ("sigma_w", "0"),
        ),
        Case(
            "MultiheadSelfAttention(heads)",
            lambda: M.MultiheadSelfAttention(10, 3),
            ValueError,
            ("num_heads", "3"),
        ),
        Case(
            "build_2d_sincos_pos_embed(odd)",
            lambda: M.build_2d_sincos_pos_embed(7, 4),
            ValueError,
            ("embed_dim", "7"),
        ),
        Case(
            "patchify2d(shape)",
            lambda: M.patchify2d(torch.zeros(1, 1, 5, 4), 2),
            ValueError,
            ("patch_size", "2"),
        ),
        Case(
            "MLPEnergy(hidden_dims=0)",
            lambda: M.MLPEnergy(2, hidden_dims=0),
            ValueError,
            ("hidden_dims", "0"),
        ),
        Case("MLPEnergy(input_dim=0)", lambda: M.MLPEnergy(0), ValueError, ("input_dim", "0")),
        Case(
            "MLPEnergy.forward(x=1-D)",
            lambda: M.MLPEnergy(2)(torch.zeros(2)),
            ValueError,
            ("x", "(2,)"),
        ),
        Case(
            "MLPVelocity(hidden_dims=-1)",
            lambda: M.MLPVelocity(2, hidden_dims=-1),
            ValueError,
            ("hidden_dims", "-1"),
        ),
        Case(
            "LabelClassifierFreeGuidance(base=3)",
            lambda: M.LabelClassifierFreeGuidance(3, null_label_id=0),
            TypeError,
            ("base", "int"),
        ),
        Case(
            "MLPTimestepEmbedder(out_dim=0)",
            lambda: M.MLPTimestepEmbedder(0),
            ValueError,
            ("out_dim", "0"),
        ),
        Case(
            "LabelEmbedder(dropout_prob=1.5)",
            lambda: M.LabelEmbedder(3, 4, dropout_prob=1.5),
            ValueError,
            ("dropout_prob", "1.5"),
        ),
        Case(
            "LabelEmbedder(num_classes=0)",
            lambda: M.LabelEmbedder(0, 4),
            ValueError,
            ("num_classes", "0"),
        ),
        Case(
            "ConvPatchEmbed2d(patch_size=0)",
            lambda: M.ConvPatchEmbed2d(in_channels=1, embed_dim=4, patch_size=0),
            ValueError,
            ("patch_size", "0"),
        ),
        Case(
            "FeedForward(mlp_ratio=0)",
            lambda: M.FeedForward(4, mlp_ratio=0.0),
            ValueError,
            ("mlp_ratio", "0"),
        ),
        Case(
            "FeedForward(dropout=2)",
            lambda: M.FeedForward(4, dropout=2.0),
            ValueError,
            ("dropout", "2.0"),
        ),
        Case(
            "AdaLNZeroBlock(heads)",
            lambda: M.AdaLNZeroBlock(embed_dim=10, num_heads=3),
            ValueError,
            ("num_heads", "3"),
        ),
        Case(
            "AdaLNZeroPatchHead(patch_size=0)",
            lambda: M.AdaLNZeroPatchHead(embed_dim=4, patch_size=0, out_channels=1),
            ValueError,
            ("patch_size", "0"),
        ),
        Case(
            "DiT(patch_size=0)",
            lambda: M.DiT(input_size=8, in_channels=1, patch_size=0),
            ValueError,
            ("patch_size", "0"),
        ),
        Case(
            "TimeConditionedMLP(depth=0)",
            lambda: M.TimeConditionedMLP(in_dim=2, depth=0),
            ValueError,
            ("depth", "0"),
        ),
        Case(
            "AdaLNZeroMLPBlock(embed_dim=0)",
            lambda: M.AdaLNZeroMLPBlock(embed_dim=0),
            ValueError,
            ("embed_dim", "0"),
        ),
        Case(
            "AdaLNZeroLinearHead(out_dim=0)",
            lambda: M.AdaLNZeroLinearHead(embed_dim=4, out_dim=0),
            ValueError,
            ("out_dim", "0"),
        ),
        Case(
            "ClassifierFreeGuidance(null_condition=None)",
            lambda: M.ClassifierFreeGuidance(nn.Linear(2, 2), 2.0, None),
            ValueError,
            ("null_condition",),
        ),
        Case(
            "FlowMatchingLoss(t_sampler='beta')",
            lambda: L.FlowMatchingLoss(nn.Linear(2, 2), t_sampler="beta"),
            ValueError,
            ("t_sampler", "'beta'"),
        ),
    ]
    # ------------------------------------------------------------------ datasets
    for cls in DATASETS:
        name = cls.__name__
        c.append(
            Case(
                f"{name}(n_samples=0)",
                (lambda cls=cls: cls(n_samples=0)),
                ValueError,
                ("n_samples", "0"),
            )
        )
        c.append(
            Case(
                f"{name}(n_samples=2.5)",
                (lambda cls=cls: cls(n_samples=2.5)),
                TypeError,
                ("n_samples", "2.5"),
            )
        )
    c += [
        Case(
            "GaussianMixtureDataset(n_components=0)",
            lambda: DS.GaussianMixtureDataset(n_components=0),
            ValueError,
            ("n_components", "0"),
        ),
        Case(
            "GaussianMixtureDataset(std=-1)",
            lambda: DS.GaussianMixtureDataset(std=-1.0),
            ValueError,
            ("std", "-1"),
        ),
        Case(
            "EightGaussiansDataset(std=-1)",
            lambda: DS.EightGaussiansDataset(std=-1.0),
            ValueError,
            ("std", "-1"),
        ),
        Case(
            "PinwheelDataset(n_classes=0)",
            lambda: DS.PinwheelDataset(n_classes=0),
            ValueError,
            ("n_classes", "0"),
        ),
        Case(
            "GridDataset(n_samples_per_dim=0)",
            lambda: DS.GridDataset(n_samples_per_dim=0),
            ValueError,
            ("n_samples_per_dim", "0"),
        ),
        Case(
            "TwoMoonsDataset(noise=-1)",
            lambda: DS.TwoMoonsDataset(noise=-1.0),
            ValueError,
            ("noise", "-1"),
        ),
        Case("CircleDataset[-10]", lambda: DS.CircleDataset(n_samples=5)[10], IndexError, ("10",)),
    ]
    c += [  # evaluation (torchebm.samplers AIS)
        Case(
            "AnnealedImportanceSampling(n_intermediate=0)",
            lambda: S.AnnealedImportanceSampling(H(), n_intermediate=0),
            ValueError,
            ("n_intermediate", "0"),
        ),
        Case(
            "AnnealedImportanceSampling(step_size=-1)",
            lambda: S.AnnealedImportanceSampling(H(), step_size=-1.0),
            ValueError,
            ("step_size", "-1"),
        ),
        Case(
            "AnnealedImportanceSampling.estimate(n_chains=0)",
            lambda: S.AnnealedImportanceSampling(H()).estimate(0, 2),
            ValueError,
            ("n_chains", "0"),
        ),
    ]
    c += _energy_shape_cases()
    return c


class _ColumnEnergy(BaseModel):
    """Energies shaped ``(B, 1)`` instead of ``(B,)``; a correct closed-form gradient, so each
    caller's own energy check (not `BaseModel.gradient`'s) is what fails."""

    def forward(self, x):
        return x.square().sum(1, keepdim=True)

    def gradient(self, x, model_kwargs=None):
        return 2 * x


def _energy_shape_cases() -> list[Case]:
    """Every entry point that evaluates a model's energies rejects a ``(B, 1)`` result, except
    score matching, which squeezes it with a ``DeprecationWarning`` as torchebm 0.8.9's took
    it (tests/losses/test_score_matching_column_energies.py)."""
    from torchebm.visualization import energy_grid

    col = _ColumnEnergy
    langevin = lambda: S.LangevinDynamics(col(), step_size=0.01)  # noqa: E731
    calls = {
        "BaseModel.gradient": lambda: BaseModel.gradient(col(), X),
        "HamiltonianMonteCarlo.sample": lambda: S.HamiltonianMonteCarlo(
            col(), step_size=0.1, n_leapfrog_steps=2
        ).sample(x=X, n_steps=1),
        "AnnealedImportanceSampling.estimate": lambda: S.AnnealedImportanceSampling(col()).estimate(
            4, 2
        ),
        "ContrastiveDivergence": lambda: L.ContrastiveDivergence(col(), langevin(), k_steps=1)(X),
        "ParallelTemperingCD": lambda: L.ParallelTemperingCD(
            col(), langevin(), k_steps=1, temperatures=(1.0, 2.0)
        )(X),
        "EnergyMatchingLoss": lambda: L.EnergyMatchingLoss(col(), n_langevin_steps=1)(X),
        "energy_grid": lambda: energy_grid(col(), grid_size=3),
    }
    # the message names what was expected and the (n, 1) shape that came back
    words = ("must return energies of shape (B,)", ", 1)")
    return [
        Case(f"{name} with (B, 1) energies", call, ShapeError, words)
        for name, call in calls.items()
    ]


CASES = _ctor_cases()
# Known defects of other pieces (xfail strict: the row starts passing when they are fixed).
BUGS: dict[str, str] = {}


def _param(case: Case):
    marks = list(case.marks)
    bug = BUGS.get(case.id, case.bug)
    if bug:
        marks.append(pytest.mark.xfail(strict=True, reason=bug))
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input_is_rejected_with_a_named_message(case: Case):
    with pytest.raises(case.exc) as info:
        case.call()
    msg = str(info.value)
    for w in case.words:
        assert w.lower() in msg.lower(), f"{case.id}: {w!r} not in message {msg!r}"


def test_table_covers_every_public_constructor():
    """Every public class of every piece appears in at least one row (by name)."""
    ids = " ".join(c.id for c in CASES)
    covered_elsewhere = {
        # abstract bases, enums, results and modules exercised through subclasses
        "BaseSyntheticDataset",
        "PredictionType",
        "CouplingResult",
        "AISResult",
        "LeapfrogResult",
        "CosineInterpolant",
        "VarianceExplodingInterpolant",
        "MidpointIntegrator",
        "RK438Integrator",
        "Dopri8Integrator",
        "Bosh3Integrator",
        "AdaptiveHeunIntegrator",
        "HeunIntegrator",
        "BackwardEulerMaruyamaIntegrator",
        # bases that moved out of torchebm.core (validated through their subclasses' rows)
        "BaseRungeKuttaIntegrator",
        "BaseSDERungeKuttaIntegrator",
        "BaseSymplecticIntegrator",
        "BaseContrastiveDivergence",
        "BaseScoreMatching",
        "TrainerCallback",
    }
    missing = []
    for mod in (S, L, C, I, IP, DS, M):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if isinstance(obj, type) and name not in covered_elsewhere and name not in ids:
                missing.append(f"{mod.__name__}.{name}")
    assert not missing, f"no validation row for {missing}"
    assert len(CASES) > 150


def test_table_rows_are_well_formed():
    """Unique ids, one specific expected error per row, and words that name the input."""
    ids = [c.id for c in CASES]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"duplicate row ids {dupes}"
    # no catch-all (Exception) and at most two kinds per row
    accepted = (ValueError, TypeError, LookupError, NonFiniteError, RuntimeError)
    for c in CASES:
        excs = c.exc if isinstance(c.exc, tuple) else (c.exc,)
        assert excs and all(issubclass(e, accepted) for e in excs), c.id
        assert len(excs) <= 2, f"{c.id} accepts {excs}"
        assert c.words and all(isinstance(w, str) and w for w in c.words), c.id


def test_every_analytic_model_rejects_bad_parameters():
    """Each analytic energy of core has at least one bad-parameter row."""
    ids = " ".join(c.id for c in CASES)
    for name in (
        "GaussianModel(mean nan)",
        "HarmonicModel(",
        "DoubleWellModel(",
        "RastriginModel(",
        "AckleyModel(",
        "RosenbrockModel(b=",
    ):
        assert name in ids, f"no bad-parameter row for {name}"
