"""Bad inputs that used to pass silently (garbage, NaN, a hang) or fail with an error that
did not name the argument: time grids of the integrators, coupling inputs, the flow losses'
inputs and options, metrics, datasets and AIS; then sampler flags, integrator starting
states and masses, interpolant times, the likelihood's inputs, loss dtypes and the median
heuristic. Same contract as ``test_validation_table``: the call raises the expected error
and the message names the argument and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch
from _support.host_reads import count_host_reads
from torch import nn

import torchebm.couplings as C
import torchebm.datasets as DS
import torchebm.flows as F
import torchebm.integrators as I
import torchebm.interpolants as IP
import torchebm.losses as L
import torchebm.metrics as MT
import torchebm.models as M
import torchebm.samplers as S
from torchebm.core import BaseModel, HarmonicModel
from torchebm.core.errors import NonFiniteError, ShapeError
from torchebm.integrators import _integrate_time_grid

NAN, INF = float("nan"), float("inf")
X = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
XN = X.clone()
XN[1, 0] = NAN


@dataclass
class Case:
    id: str
    call: Callable[[], Any]
    exc: type[BaseException] | tuple[type[BaseException], ...]
    words: tuple[str, ...]


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.emb = nn.Embedding(10, 2)

    def forward(self, x, t, y=None, **kw):
        return self.lin(x) + (0 if y is None else self.emb(y))


class Potential(BaseModel):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        return self.lin(x).sum(-1) + (x**2).sum(-1)


def drift(x, t):
    return -x


def st():
    return {"x": X.clone()}


def _gaussian(x):
    return 0.5 * (x**2).sum(-1)


def _integrator_cases() -> list[Case]:
    rk4, em = I.RK4Integrator(), I.EulerMaruyamaIntegrator()
    return [
        Case(
            "RK4.integrate(t non-monotone)",
            lambda: rk4.integrate(st(), drift=drift, t=torch.tensor([0.0, 0.5, 0.2, 1.0])),
            ValueError,
            ("t", "strictly", "0.2"),
        ),
        Case(
            "RK4.integrate(t repeated)",
            lambda: rk4.integrate(st(), drift=drift, t=torch.tensor([0.0, 0.5, 0.5, 1.0])),
            ValueError,
            ("t", "strictly"),
        ),
        Case(
            "RK4.integrate(t NaN)",
            lambda: rk4.integrate(st(), drift=drift, t=torch.tensor([0.0, NAN, 1.0])),
            NonFiniteError,
            ("t", "nan"),
        ),
        Case(
            "EulerMaruyama.integrate(t inf, sde)",
            lambda: em.integrate(st(), drift=drift, noise_scale=1.0, t=torch.tensor([0.0, INF])),
            NonFiniteError,
            ("t", "inf"),
        ),
        Case(
            "Dopri5.integrate(adaptive, t [0, nan])",
            lambda: I.Dopri5Integrator().integrate(st(), drift=drift, t=torch.tensor([0.0, NAN])),
            NonFiniteError,
            ("t", "nan"),
        ),
        Case(
            "RK4.integrate(step_size tensor nan)",
            lambda: rk4.integrate(st(), torch.tensor(NAN), 2, drift=drift),
            ValueError,
            ("step_size", "nan"),
        ),
        Case(
            "_integrate_time_grid(t turns back)",
            lambda: _integrate_time_grid(X, torch.tensor([0.0, 1.0, 0.5]), lambda x, t, h: x),
            ValueError,
            ("t", "strictly"),
        ),
        Case(
            "FlowSampler(sample_eps=0.6)",
            lambda: S.FlowSampler(Field(), sample_eps=0.6),
            ValueError,
            ("sample_eps", "0.6"),
        ),
    ]


def _coupling_cases() -> list[Case]:
    two = torch.tensor([[NAN, 0.0], [1.0, 1.0]])
    return [
        Case(  # looped forever: a NaN cost never yields a mutual cheapest pair
            "GreedyCoupling(x0 NaN)",
            lambda: C.GreedyCoupling()(two, X[:2]),
            NonFiniteError,
            ("GreedyCoupling", "x0", "nan"),
        ),
        Case(
            "SinkhornCoupling(x1 inf)",
            lambda: C.SinkhornCoupling()(X[:2], two.nan_to_num(nan=INF)),
            NonFiniteError,
            ("SinkhornCoupling", "x1", "inf"),
        ),
        Case(
            "UnbalancedSinkhornCoupling(x0 NaN)",
            lambda: C.UnbalancedSinkhornCoupling()(two, X[:2]),
            NonFiniteError,
            ("x0", "nan"),
        ),
        Case(
            "ExactOTCoupling(x0 int)",
            lambda: C.ExactOTCoupling()(torch.zeros(2, 2, dtype=torch.long), X[:2]),
            TypeError,
            ("x0", "int64"),
        ),
        Case(
            "IndependentCoupling(event mismatch)",
            lambda: C.IndependentCoupling()(X, torch.zeros(8, 3)),
            ValueError,
            ("x0", "(8, 2)", "(8, 3)"),
        ),
        Case(
            "IndependentCoupling(empty)",
            lambda: C.IndependentCoupling()(torch.zeros(0, 2), torch.zeros(0, 2)),
            ValueError,
            ("x0", "(0, 2)"),
        ),
        Case(
            "auction_assignment(tol=nan)",
            lambda: C.auction_assignment(torch.ones(2, 2), tol=NAN),
            ValueError,
            ("tol", "nan"),
        ),
        Case(
            "auction_assignment(max_rounds=0)",
            lambda: C.auction_assignment(torch.ones(2, 2), max_rounds=0),
            ValueError,
            ("max_rounds", "0"),
        ),
        Case(
            "auction_assignment(cost list)",
            lambda: C.auction_assignment([[1.0]]),
            TypeError,
            ("cost", "list"),
        ),
    ]


def fm(**kw):
    return L.FlowMatchingLoss(Field(), **kw)


def _loss_cases() -> list[Case]:
    return [
        Case("FlowMatchingLoss(x NaN)", lambda: fm()(XN), NonFiniteError, ("x", "[1]")),
        Case("FlowMatchingLoss(x0 NaN)", lambda: fm()(X, x0=XN), NonFiniteError, ("x0", "[1]")),
        Case(
            "FlowMatchingLoss(x NaN, nan_policy=warn)",
            lambda: fm(nan_policy="warn")(XN),
            NonFiniteError,
            ("x", "[1]"),
        ),
        Case(
            "EquilibriumMatchingLoss(x NaN)",
            lambda: L.EquilibriumMatchingLoss(Field())(XN),
            NonFiniteError,
            ("x", "[1]"),
        ),
        Case(
            "EnergyMatchingLoss(x NaN, OT coupling)",
            lambda: L.EnergyMatchingLoss(Potential(), lambda_cd=0.0)(XN),
            NonFiniteError,
            ("x", "[1]"),
        ),
        Case(
            "FlowMatchingLoss(x0 int)",
            lambda: fm()(X, x0=torch.ones(8, 2, dtype=torch.long)),
            TypeError,
            ("x0", "int64"),
        ),
        Case(
            "FlowMatchingLoss(y batch 3 for x batch 8)",
            lambda: fm()(X, y=torch.arange(3)),
            ValueError,
            ("y", "(3,)", "8"),
        ),
        Case(
            "EquilibriumMatchingLoss(y batch mismatch)",
            lambda: L.EquilibriumMatchingLoss(Field())(X, y=torch.arange(3)),
            ValueError,
            ("y", "(3,)"),
        ),
        Case(
            "FlowMatchingLoss(model_kwargs=[1])",
            lambda: fm()(X, model_kwargs=[1]),
            TypeError,
            ("model_kwargs", "list"),
        ),
        Case(
            "FlowMatchingLoss(negate_velocity='no')",
            lambda: fm(negate_velocity="no"),
            TypeError,
            ("negate_velocity", "'no'"),
        ),
        Case(
            "FlowMatchingLoss(loss_weight_fn shape)",
            lambda: fm(loss_weight_fn=lambda t: t[:2])(X),
            ValueError,
            ("loss_weight_fn", "(2,)", "(8,)"),
        ),
        Case(
            "FlowMatchingLoss(t_p_mean=nan)",
            lambda: fm(t_sampler="lognormal", t_p_mean=NAN),
            ValueError,
            ("t_p_mean", "nan"),
        ),
        Case(
            "EquilibriumMatchingLoss(ct_threshold=nan)",
            lambda: L.EquilibriumMatchingLoss(Field(), ct_threshold=NAN),
            ValueError,
            ("ct_threshold", "nan"),
        ),
        Case(
            "EquilibriumMatchingLoss(time_invariant='no')",
            lambda: L.EquilibriumMatchingLoss(Field(), time_invariant="no"),
            TypeError,
            ("time_invariant", "'no'"),
        ),
        Case(
            "EquilibriumMatchingLoss(apply_dispersion='no')",
            lambda: L.EquilibriumMatchingLoss(Field(), apply_dispersion="no"),
            TypeError,
            ("apply_dispersion", "'no'"),
        ),
        Case(
            "EnergyMatchingLoss(flow_weight_cutoff=nan)",
            lambda: L.EnergyMatchingLoss(Potential(), flow_weight_cutoff=NAN),
            ValueError,
            ("flow_weight_cutoff", "nan"),
        ),
        Case(
            "DenoisingScoreMatching(sigma=-1)",
            lambda: L.DenoisingScoreMatching(Potential(), sigma=-1.0),
            ValueError,
            ("sigma", "-1"),
        ),
        Case(
            "trimmed_mean(values empty)",
            lambda: L.trimmed_mean(torch.ones(0), 0.1),
            ValueError,
            ("values", "(0,)"),
        ),
        Case(
            "trimmed_mean(values int)",
            lambda: L.trimmed_mean(torch.arange(4), 0.25),
            TypeError,
            ("values", "int64"),
        ),
        Case(
            "compute_flow_weight(cutoff=nan)",
            lambda: L.compute_flow_weight(torch.rand(4), NAN),
            ValueError,
            ("cutoff", "nan"),
        ),
        Case(
            "compute_eqm_ct(threshold=nan)",
            lambda: L.compute_eqm_ct(torch.rand(4), NAN),
            ValueError,
            ("threshold", "nan"),
        ),
        Case(
            "compute_eqm_ct(multiplier=inf)",
            lambda: L.compute_eqm_ct(torch.rand(4), 0.8, INF),
            ValueError,
            ("multiplier", "inf"),
        ),
        Case(
            "dispersive_loss(z list)",
            lambda: L.dispersive_loss([[1.0]]),
            TypeError,
            ("z", "list"),
        ),
        Case(
            "TimeSampler(batch=True)",
            lambda: F.TimeSampler()(True, 0.0, device="cpu", dtype=torch.float32, generator=None),
            TypeError,
            ("batch", "True"),
        ),
        Case(
            "TimeSampler(eps=nan)",
            lambda: F.TimeSampler()(4, NAN, device="cpu", dtype=torch.float32, generator=None),
            ValueError,
            ("eps", "nan"),
        ),
    ]


def _other_cases() -> list[Case]:
    ais = lambda **kw: S.AnnealedImportanceSampling(HarmonicModel(), n_intermediate=3, **kw)  # noqa: E731
    return [
        Case(  # integer grid points: energies of rounded points, log Z off by 0.67
            "grid_log_partition(dtype=long)",
            lambda: MT.grid_log_partition(_gaussian, dtype=torch.long),
            TypeError,
            ("dtype", "int64"),
        ),
        Case(
            "grid_log_partition(center=(nan, 0))",
            lambda: MT.grid_log_partition(_gaussian, center=(NAN, 0.0)),
            ValueError,
            ("center[0]", "nan"),
        ),
        Case(
            "grid_log_partition(center 3 numbers)",
            lambda: MT.grid_log_partition(_gaussian, center=(0.0, 0.0, 0.0)),
            TypeError,
            ("center", "(0.0, 0.0, 0.0)"),
        ),
        Case(
            "grid_log_partition(extent flat)",
            lambda: MT.grid_log_partition(_gaussian, extent=(1.0, 2.0)),
            TypeError,
            ("extent", "1.0"),
        ),
        Case(
            "grid_nll(log_partition=3.0)",
            lambda: MT.grid_nll(_gaussian, X, log_partition=3.0),
            TypeError,
            ("log_partition", "float"),
        ),
        Case(
            "make_two_moons(shuffle='no')",
            lambda: DS.make_two_moons(10, shuffle="no"),
            TypeError,
            ("shuffle", "'no'"),
        ),
        Case(
            "TwoMoonsDataset(shuffle=None)",
            lambda: DS.TwoMoonsDataset(n_samples=10, shuffle=None),
            TypeError,
            ("shuffle", "None"),
        ),
        Case(  # was dim 1 (bool as int): log Z of the wrong dimension
            "AnnealedImportanceSampling.estimate(dim=True)",
            lambda: ais().estimate(4, True),
            TypeError,
            ("dim", "True"),
        ),
        Case(
            "AnnealedImportanceSampling.estimate(dim=(2.5,))",
            lambda: ais().estimate(4, (2.5,)),
            TypeError,
            ("dim[0]", "2.5"),
        ),
        Case(
            "AnnealedImportanceSampling(base_mean=nan)",
            lambda: ais(base_mean=NAN),
            ValueError,
            ("base_mean", "nan"),
        ),
        Case(
            "AnnealedImportanceSampling(base_mean tensor nan)",
            lambda: ais(base_mean=torch.tensor([NAN, 0.0])),
            NonFiniteError,
            ("base_mean",),
        ),
    ]


def _sampler_flag_cases() -> list[Case]:
    def run(**kw):
        return S.LangevinDynamics(HarmonicModel(), step_size=0.1).sample(X, n_steps=2, **kw)

    return [
        Case(  # the string "False" is truthy: a trajectory came back instead of the chains
            "LangevinDynamics.sample(return_trajectory='False')",
            lambda: run(return_trajectory="False"),
            TypeError,
            ("return_trajectory", "'False'"),
        ),
        Case(
            "LangevinDynamics.sample(return_diagnostics=1)",
            lambda: run(return_diagnostics=1),
            TypeError,
            ("return_diagnostics", "1"),
        ),
        Case(
            "LangevinDynamics.sample(reset_schedulers=None)",
            lambda: run(reset_schedulers=None),
            TypeError,
            ("reset_schedulers", "None"),
        ),
        Case(
            "LangevinDynamics.sample(compile=0)",
            lambda: run(compile=0),
            TypeError,
            ("compile", "0"),
        ),
    ]


def _start_and_mass_cases() -> list[Case]:
    lf, gl = I.LeapfrogIntegrator(), I.GeneralisedLeapfrogIntegrator()

    def leap(mass=None, x=X, p=None):
        p = torch.zeros_like(X) if p is None else p
        return lf.integrate({"x": x, "p": p}, 0.1, 3, mass, gradient=lambda z, t: z)

    return [
        Case(  # was clamped to 1e-10 silently: the chains left at ~1e9 per step
            "LeapfrogIntegrator.integrate(mass tensor negative)",
            lambda: leap(torch.tensor([-1.0, 1.0])),
            ValueError,
            ("mass", "-1.0", "[0]"),
        ),
        Case(
            "LeapfrogIntegrator.integrate(mass tensor zero)",
            lambda: leap(torch.tensor([1.0, 0.0])),
            ValueError,
            ("mass", "0.0", "[1]"),
        ),
        Case(
            "LeapfrogIntegrator.integrate(mass tensor NaN)",
            lambda: leap(torch.tensor([NAN, 1.0])),
            ValueError,
            ("mass", "nan"),
        ),
        Case(
            "LeapfrogIntegrator.integrate(mass one-element tensor -2)",
            lambda: leap(torch.tensor([-2.0])),
            ValueError,
            ("mass", "-2.0"),
        ),
        Case(
            "LeapfrogIntegrator.integrate(x NaN)",
            lambda: leap(x=XN),
            NonFiniteError,
            ("state['x']", "[1]"),
        ),
        Case(
            "LeapfrogIntegrator.integrate(p inf)",
            lambda: leap(p=XN.nan_to_num(nan=INF)),
            NonFiniteError,
            ("state['p']", "[1]"),
        ),
        Case(
            "GeneralisedLeapfrogIntegrator.integrate(x NaN)",
            lambda: gl.integrate(
                {"x": XN, "p": X}, 0.1, 2, force=lambda x, p, t: -x, velocity=lambda x, p, t: p
            ),
            NonFiniteError,
            ("state['x']", "[1]"),
        ),
        Case(
            "RK4.integrate(x NaN)",
            lambda: I.RK4Integrator().integrate({"x": XN}, 0.1, 3, drift=drift),
            NonFiniteError,
            ("state['x']", "[1]"),
        ),
        Case(  # the adaptive path blamed the drift
            "Dopri5.integrate(x NaN, adaptive)",
            lambda: I.Dopri5Integrator().integrate(
                {"x": XN}, drift=drift, t=torch.tensor([0.0, 1.0])
            ),
            NonFiniteError,
            ("state['x']", "[1]"),
        ),
        Case(
            "EulerMaruyama.integrate(x inf, sde)",
            lambda: I.EulerMaruyamaIntegrator().integrate(
                {"x": XN.nan_to_num(nan=INF)}, 0.1, 3, drift=drift, noise_scale=1.0
            ),
            NonFiniteError,
            ("state['x']", "[1]"),
        ),
    ]


def _interpolant_cases() -> list[Case]:
    lin, cos = IP.LinearInterpolant(), IP.CosineInterpolant()
    vp, ve = IP.VariancePreservingInterpolant(), IP.VarianceExplodingInterpolant()
    t = torch.rand(8, generator=torch.Generator().manual_seed(1))
    t_out, t_nan = t.clone(), t.clone()
    t_out[3], t_nan[5] = 1.5, NAN

    def fm_with(times):
        return fm(t_sampler=lambda b, **kw: times)(X)

    return [
        Case(  # extrapolated the path: x_t = 1.5 x1 - 0.5 x0
            "LinearInterpolant.interpolate(t 1.5)",
            lambda: lin.interpolate(X, X, t_out),
            ValueError,
            ("t", "[1.5]", "[3]"),
        ),
        Case(
            "CosineInterpolant.interpolate(t NaN)",
            lambda: cos.interpolate(X, X, t_nan),
            NonFiniteError,
            ("t", "nan", "[5]"),
        ),
        Case(
            "LinearInterpolant.interpolate(t=-0.25 number)",
            lambda: lin.interpolate(X, X, -0.25),
            ValueError,
            ("t", "-0.25"),
        ),
        Case(
            "VariancePreservingInterpolant.compute_drift(t 1.5)",
            lambda: vp.compute_drift(X, t_out),
            ValueError,
            ("t", "1.5"),
        ),
        Case(
            "VarianceExplodingInterpolant.velocity_to_score(t NaN)",
            lambda: ve.velocity_to_score(X, X, t_nan),
            NonFiniteError,
            ("t", "nan"),
        ),
        Case(
            "CosineInterpolant.noise_to_velocity(t=2.0)",
            lambda: cos.noise_to_velocity(X, X, 2.0),
            ValueError,
            ("t", "2.0"),
        ),
        Case(
            "LinearInterpolant.compute_diffusion(norm=nan)",
            lambda: lin.compute_diffusion(X, t, "sigma", NAN),
            ValueError,
            ("norm", "nan"),
        ),
        Case(  # a negative D: sqrt(2 D h) is NaN in the SDE step
            "LinearInterpolant.compute_diffusion(norm=-1)",
            lambda: lin.compute_diffusion(X, t, "constant", -1.0),
            ValueError,
            ("norm", "-1"),
        ),
        Case(
            "FlowMatchingLoss(t_sampler returns 1.5)",
            lambda: fm_with(t_out),
            ValueError,
            ("t_sampler", "1.5", "[3]"),
        ),
        Case(
            "EquilibriumMatchingLoss(t_sampler returns NaN)",
            lambda: L.EquilibriumMatchingLoss(Field(), t_sampler=lambda b, **kw: t_nan)(X),
            NonFiniteError,
            ("t_sampler", "nan"),
        ),
        Case(  # the message named t_sampler, a parameter TimeSampler does not have
            "TimeSampler('bad')",
            lambda: F.TimeSampler("bad"),
            ValueError,
            ("kind", "'bad'"),
        ),
        Case(
            "TimeSampler(kind returns 1.5)",
            lambda: F.TimeSampler(lambda b, **kw: t_out)(
                8, 0.0, device="cpu", dtype=torch.float32, generator=None
            ),
            ValueError,
            ("kind", "1.5"),
        ),
    ]


def _likelihood_dtype_and_metric_cases() -> list[Case]:
    def pfll(**kw):
        return F.probability_flow_log_likelihood(drift, X, integrator="euler", n_steps=2, **kw)

    same = torch.ones(4, 2)
    return [
        Case(
            "bits_per_dim(log_likelihood list)",
            lambda: F.bits_per_dim([1.0], 2),
            TypeError,
            ("log_likelihood", "list"),
        ),
        Case(  # NaN in, NaN out
            "bits_per_dim(log_likelihood NaN)",
            lambda: F.bits_per_dim(torch.tensor([0.0, NAN]), 2),
            NonFiniteError,
            ("log_likelihood", "nan", "[1]"),
        ),
        Case(
            "bits_per_dim(data_range 3 numbers)",
            lambda: F.bits_per_dim(torch.zeros(2), 2, n_bins=256, data_range=(0.0, 1.0, 2.0)),
            TypeError,
            ("data_range", "(0.0, 1.0, 2.0)"),
        ),
        Case(
            "probability_flow_log_likelihood(prior=3)",
            lambda: pfll(prior=3),
            TypeError,
            ("prior", "3"),
        ),
        Case(
            "probability_flow_log_likelihood(prior returns (B, D))",
            lambda: pfll(prior=lambda z: z),
            ValueError,
            ("prior", "(8,)", "(8, 2)"),
        ),
        Case(
            "probability_flow_log_likelihood(model_kwargs list)",
            lambda: pfll(model_kwargs=[1]),
            TypeError,
            ("model_kwargs", "list"),
        ),
        Case(
            "probability_flow_log_likelihood(generator=3)",
            lambda: pfll(divergence="hutchinson", generator=3),
            TypeError,
            ("generator must be", "int"),  # torch's randn error named it in a signature dump
        ),
        Case(
            "probability_flow_log_likelihood(data_range 'ab')",
            lambda: pfll(n_bins=256, data_range="ab"),
            TypeError,
            ("data_range", "'ab'"),
        ),
        Case(  # was ignored: the model's or the default float32 dtype was used
            "FlowMatchingLoss(dtype=torch.long)",
            lambda: fm(dtype=torch.long),
            TypeError,
            ("dtype", "torch.int64"),
        ),
        Case(
            "ContrastiveDivergence(dtype=torch.int32)",
            lambda: L.ContrastiveDivergence(Potential(), None, dtype=torch.int32),
            TypeError,
            ("dtype", "torch.int32"),
        ),
        Case(  # returned 1.0: a length scale made up for data at any scale
            "median_bandwidth(identical points)",
            lambda: MT.median_bandwidth(same, same.clone()),
            ValueError,
            ("median", "x and y", "28 of the 28", "bandwidth"),
        ),
        Case(
            "mmd2(bandwidth='median', median 0)",
            lambda: MT.mmd2(torch.zeros(6, 1), torch.tensor([[1.0], [2.0]])),
            ValueError,
            ("median", "bandwidth"),
        ),
    ]


def _fuzz_cases() -> list[Case]:
    """Rows from a fuzz of the public entry points (bad type / dtype / value per argument)."""
    big = torch.randn(2100, 2, generator=torch.Generator().manual_seed(1))  # > 2048 points
    tok = M.patchify2d(torch.zeros(2, 3, 8, 8), 2)  # 16 tokens of 2 * 2 * 3
    vel = M.MLPVelocity(2, (8,))
    drop = M.LabelEmbedder(3, 4, dropout_prob=0.5)
    return [
        Case(  # failed inside the step: "argument alpha must not be a floating point number"
            "RK4.integrate(state x int64)",
            lambda: I.RK4Integrator().integrate({"x": X.long()}, 0.1, 2, drift=drift),
            TypeError,
            ("state['x']", "floating", "int64"),
        ),
        Case(  # NotImplementedError: negation of a bool tensor
            "Heun.step(state x bool)",
            lambda: I.HeunIntegrator().step({"x": X > 0}, 0.1, drift=drift),
            TypeError,
            ("state['x']", "bool"),
        ),
        Case(  # NotImplementedError: "arange_cpu" not implemented for 'ComplexFloat'
            "Dopri5.integrate(state x complex)",
            lambda: I.Dopri5Integrator().integrate(
                {"x": X.to(torch.complex64)}, 0.1, 2, drift=drift
            ),
            TypeError,
            ("state['x']", "complex64"),
        ),
        Case(  # TypeError: must be real number, not NoneType
            "AnnealedImportanceSampling(schedule=None)",
            lambda: S.AnnealedImportanceSampling(HarmonicModel(), schedule=None),
            ValueError,
            ("schedule", "None"),
        ),
        Case(  # ValueError: could not convert string to float: 'a'
            "make_pinwheel(spiral_scale='a')",
            lambda: DS.make_pinwheel(10, spiral_scale="a"),
            TypeError,
            ("spiral_scale", "'a'"),
        ),
        Case(  # a bool was taken as 1.0 radian
            "PinwheelDataset(spiral_scale=True)",
            lambda: DS.PinwheelDataset(10, spiral_scale=True, seed=0),
            TypeError,
            ("spiral_scale", "True"),
        ),
        Case(  # accepted: every guided output was NaN
            "ClassifierFreeGuidance(guidance_scale=nan)",
            lambda: M.ClassifierFreeGuidance(vel, guidance_scale=NAN, null_condition=0),
            ValueError,
            ("guidance_scale", "nan"),
        ),
        Case(  # accepted: every guided output was inf/NaN
            "LabelClassifierFreeGuidance(cfg_scale=inf)",
            lambda: M.LabelClassifierFreeGuidance(vel, null_label_id=3, cfg_scale=INF),
            ValueError,
            ("cfg_scale", "inf"),
        ),
        Case(  # TypeError: 'NoneType' object is not iterable
            "DiT(input_size=None)",
            lambda: M.DiT(input_size=None, in_channels=3, embed_dim=8, depth=1, num_heads=2),
            ValueError,
            ("input_size", "None"),
        ),
        Case(  # RuntimeError: invalid shape dimension -4 (the product matched 16 tokens)
            "unpatchify2d(grid_size=(-4, -4))",
            lambda: M.unpatchify2d(tok, 2, out_channels=3, grid_size=(-4, -4)),
            ValueError,
            ("grid_size", "-4"),
        ),
        Case(  # ValueError: invalid literal for int() with base 10: 'a'
            "unpatchify2d(grid_size='ab')",
            lambda: M.unpatchify2d(tok, 2, out_channels=3, grid_size="ab"),
            TypeError,
            ("grid_size", "'ab'"),
        ),
        Case(  # AttributeError: 'int' object has no attribute 'device'
            "LabelEmbedder.forward(generator=1)",
            lambda: drop(torch.tensor([0, 1]), training=True, generator=1),
            TypeError,
            ("generator", "int"),
        ),
        Case(  # TypeError from torch.randperm, naming no argument of the metric
            "median_bandwidth(generator=1, > 2048 points)",
            lambda: MT.median_bandwidth(big, big + 1, generator=1),
            TypeError,
            ("generator must be a torch.Generator", "int"),
        ),
        Case(  # accepted and ignored (the generator is only drawn from above 2048 points)
            "mmd2(generator='a')",
            lambda: MT.mmd2(X, X + 1, generator="a"),
            TypeError,
            ("generator", "str"),
        ),
        Case(  # TypeError from torch.randperm
            "kernel_two_sample_test(generator=1)",
            lambda: MT.kernel_two_sample_test(X, X + 1, n_permutations=5, generator=1),
            TypeError,
            ("generator must be a torch.Generator", "int"),
        ),
        Case(  # TypeError from torch.randn
            "sliced_wasserstein(generator=1)",
            lambda: MT.sliced_wasserstein(X, X + 1, generator=1),
            TypeError,
            ("generator must be a torch.Generator", "int"),
        ),
        Case(  # NotImplementedError: negation of a bool tensor
            "bits_per_dim(log_likelihood bool)",
            lambda: F.bits_per_dim(torch.ones(3, dtype=torch.bool), 2),
            TypeError,
            ("log_likelihood", "bool"),
        ),
        Case(  # returned complex bits per dimension
            "bits_per_dim(log_likelihood complex)",
            lambda: F.bits_per_dim(torch.ones(3, dtype=torch.complex64), 2),
            TypeError,
            ("log_likelihood", "complex64"),
        ),
    ]


def _helper_cases() -> list[Case]:
    """Low-level public helpers (they run inside training steps: attribute checks only)."""
    lf = I.LeapfrogIntegrator()
    state = {"x": X.clone(), "p": X.clone()}
    tb, tc = torch.tensor([True, False]), torch.tensor([0.5, 0.2], dtype=torch.complex64)
    tokens = torch.zeros(2, 5, 8)
    return [
        Case(  # AttributeError: 'NoneType' object has no attribute 'ndim'
            "mean_flat(None)", lambda: F.mean_flat(None), TypeError, ("t", "NoneType")
        ),
        Case(  # NotImplementedError: subtraction with a bool tensor
            "compute_flow_weight(t bool)",
            lambda: F.compute_flow_weight(tb),
            TypeError,
            ("t", "bool"),
        ),
        Case(  # NotImplementedError: clamp is not supported for complex types
            "compute_flow_weight(t complex)",
            lambda: F.compute_flow_weight(tc),
            TypeError,
            ("t", "complex64"),
        ),
        Case(  # NotImplementedError: subtraction with a bool tensor
            "compute_eqm_ct(t bool)", lambda: F.compute_eqm_ct(tb), TypeError, ("t", "bool")
        ),
        Case(  # NotImplementedError: clamp is not supported for complex types
            "compute_eqm_ct(t complex)",
            lambda: F.compute_eqm_ct(tc),
            TypeError,
            ("t", "complex64"),
        ),
        Case(  # AttributeError: 'NoneType' object has no attribute 'reshape'
            "fourier_time_features(None)",
            lambda: M.fourier_time_features(None, 4),
            TypeError,
            ("t", "NoneType"),
        ),
        Case(  # NotImplementedError: "arange_cpu" not implemented for 'Bool'
            "fourier_time_features(t bool)",
            lambda: M.fourier_time_features(tb, 4),
            TypeError,
            ("t", "bool"),
        ),
        Case(  # RuntimeError: Could not infer dtype of NoneType
            "sinusoidal_embedding(None)",
            lambda: M.sinusoidal_embedding(None, 8),
            TypeError,
            ("t", "NoneType"),
        ),
        Case(  # RuntimeError: The size of tensor a (8) must match the size of tensor b (7)
            "modulate(shift (B, 7) for D = 8)",
            lambda: M.modulate(tokens, torch.zeros(2, 7), torch.zeros(2, 8)),
            ShapeError,
            ("shift", "(2, 7)", "(2, 5, 8)"),
        ),
        Case(  # RuntimeError: The size of tensor a (2) must match the size of tensor b (3)
            "modulate(scale of batch 3 for B = 2)",
            lambda: M.modulate(tokens, torch.zeros(2, 8), torch.zeros(3, 8)),
            ShapeError,
            ("scale", "(3, 8)", "(2, 5, 8)"),
        ),
        Case(  # NotImplementedError: "gt_cpu" not implemented for 'ComplexFloat'
            "LeapfrogIntegrator.integrate(mass complex)",
            lambda: lf.integrate(state, 0.1, 2, tc, gradient=lambda z, t: z),
            TypeError,
            ("mass", "complex64"),
        ),
    ]


CASES = (
    _integrator_cases()
    + _coupling_cases()
    + _loss_cases()
    + _other_cases()
    + _sampler_flag_cases()
    + _start_and_mass_cases()
    + _interpolant_cases()
    + _likelihood_dtype_and_metric_cases()
    + _fuzz_cases()
    + _helper_cases()
)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input_is_rejected_with_a_named_message(case: Case):
    with pytest.raises(case.exc) as info:
        case.call()
    msg = str(info.value)
    for w in case.words:
        assert w.lower() in msg.lower(), f"{case.id}: {w!r} not in message {msg!r}"


def test_rows_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


def test_trimmed_mean_does_not_trim_a_nan_away():
    """topk ranks NaN highest, so the NaN was dropped as an 'unconverged' value (2.0 here)."""
    out = L.trimmed_mean(torch.tensor([1.0, NAN, 2.0, 3.0]), 0.25)
    assert math.isnan(out.item())
    assert L.trimmed_mean(torch.tensor([1.0, 100.0, 2.0, 3.0]), 0.25).item() == 2.0


def test_valid_grids_still_integrate():
    """A decreasing grid and an adaptive [t0, t1] still work (dx/dt = -x: x(1) = x(0) e^-1)."""
    x0 = torch.ones(2, 1, dtype=torch.float64)
    f = lambda x, t: -x  # noqa: E731
    up = I.RK4Integrator().integrate({"x": x0}, drift=f, t=torch.linspace(0, 1, 41))["x"]
    assert torch.allclose(up, x0 * math.exp(-1.0), atol=1e-7)
    down = I.RK4Integrator().integrate({"x": up}, None, 40, drift=f, t=torch.linspace(1, 0, 41))
    assert torch.allclose(down["x"], x0, atol=1e-7)
    ad = I.Dopri5Integrator(dtype=torch.float64, atol=1e-10, rtol=1e-10)
    out = ad.integrate({"x": x0}, 0.1, drift=f, t=torch.tensor([0.0, 1.0]))["x"]
    assert torch.allclose(out, x0 * math.exp(-1.0), atol=1e-8)


def test_the_new_checks_read_nothing_back_inside_the_librarys_own_loops(monkeypatch):
    """Times a loss drew, chains a sampler checked at entry and a mass checked at construction
    are not checked again: no host read per loss call, none per sampler step."""
    losses = [fm(nan_policy="ignore"), L.EquilibriumMatchingLoss(Field(), nan_policy="ignore")]
    hmc = S.HamiltonianMonteCarlo(
        HarmonicModel(), step_size=0.1, n_leapfrog_steps=3, mass=torch.tensor([1.0, 2.0])
    )
    flow = S.FlowSampler(Field(), mode="sde", prediction="score")
    calls = count_host_reads(monkeypatch)
    for loss in losses:
        calls["n"] = 0
        loss(X)
        assert calls["n"] == 0, type(loss).__name__

    def reads(sampler, n):
        calls["n"] = 0
        sampler.sample(x=X, n_steps=n)
        return calls["n"]

    assert reads(hmc, 40) == reads(hmc, 10)
    assert reads(flow, 40) == reads(flow, 10)


def test_valid_times_masses_and_starts_still_pass():
    """The ends of [0, 1] are flow times; a positive tensor mass M integrates as x' = M^-1 p."""
    lin = IP.LinearInterpolant()
    xt, _ = lin.interpolate(torch.zeros(2, 1), torch.ones(2, 1), torch.tensor([0.0, 1.0]))
    assert xt.flatten().tolist() == [0.0, 1.0]
    assert lin.compute_diffusion(X, 1.0, "constant", 0.0).abs().max() == 0.0
    # U = 0: p stays, x moves by n h p / m
    p, m = torch.ones(4, 2, dtype=torch.float64), torch.tensor([2.0, 0.5], dtype=torch.float64)
    out = I.LeapfrogIntegrator().integrate(
        {"x": torch.zeros_like(p), "p": p}, 0.1, 5, m, gradient=lambda z, t: torch.zeros_like(z)
    )
    assert torch.allclose(out.x, (0.5 * p / m).expand_as(p), atol=1e-12)
    t = F.TimeSampler(lambda b, **kw: torch.linspace(0, 1, b))(
        5, 0.0, device="cpu", dtype=torch.float32, generator=None
    )
    assert t.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize(
    "call",
    [
        lambda x, g: L.DenoisingScoreMatching(_energy_net())(x, generator=g),
        lambda x, g: L.ScoreMatching(_energy_net())(x, generator=g),
        lambda x, g: F.EquilibriumMatchingLoss(nn.Linear(2, 2))(x, generator=g),
        lambda x, g: C.SinkhornCoupling()(x, x, generator=g),
        lambda x, g: C.ExactOTCoupling()(x, x, generator=g),
        lambda x, g: C.IndependentCoupling()(x, x, generator=g),
    ],
)
def test_losses_and_couplings_name_a_generator_that_is_not_a_torch_generator(call):
    # DSM/EqM failed inside torch.randn ("invalid combination of arguments"), Sinkhorn in
    # torch.multinomial; exact score matching and ExactOT/Independent took it and ignored it
    import numpy as np

    x = torch.randn(8, 2)
    for bad in (3, np.random.default_rng(0)):
        with pytest.raises(TypeError, match="generator must be a torch.Generator or None"):
            call(x, bad)


def _energy_net():
    return nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1), nn.Flatten(0))
