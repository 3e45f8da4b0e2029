r"""Samplers that step an integrator with an implicit stage count, per chain, the steps whose
Picard solve did not converge, and end ``sample()`` with one ``RuntimeWarning``.

The case behind it: Langevin dynamics with backward Euler-Maruyama on a Gaussian of
precisions (1, 10) at ``step_size`` 0.09 (h Lip = 0.9 < 1, where the scheme is stable).
Solved exactly, one step of the stiff coordinate is $x' = (x + \sqrt{2h}\xi)/(1 + h\lambda)$,
stationary variance $2h/((1 + h\lambda)^2 - 1) = 0.069$ (the target's is 0.1). Eight Picard
evaluations give instead $x' = a (x + \sqrt{2h}\xi)$ with $a = (1 - (-h\lambda)^9)/(1 + h\lambda)$,
stationary variance $2h a^2/(1 - a^2) = 0.206$, silently, before the warning existed.
"""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from samplers_helpers import gaussian_tolerance

from torchebm.core import GaussianModel, SamplerContext
from torchebm.integrators import BackwardEulerMaruyamaIntegrator
from torchebm.samplers import FlowSampler, LangevinDynamics

F64 = torch.float64
H, LAMS = 0.09, (1.0, 10.0)  # step size, precisions
N_CHAINS, N_STEPS = 2000, 60  # stiff coordinate mixes by (1/1.9)^2 per step: 60 is plenty
PATTERN = (
    r"(\w+): the implicit solve of BackwardEulerMaruyamaIntegrator did not converge at "
    r"(\d+) chain-steps \(up to (\d+) of the call's steps in one chain\) in (\d+) of (\d+) "
    r"chains.*solver_max_iter of the integrator \(now (\d+)\) or (lower step_size|raise "
    r"n_steps).*step \* Lip\(drift\) < 1"
)


def _model() -> GaussianModel:
    cov = torch.diag(torch.tensor([1.0 / lam for lam in LAMS], dtype=F64))
    return GaussianModel(torch.zeros(2, dtype=F64), cov, dtype=F64)


def _implicit_variance(lam: float, h: float = H) -> float:
    return 2 * h / ((1 + h * lam) ** 2 - 1)


def _truncated_variance(lam: float, n_eval: int, h: float = H) -> float:
    a = (1 - (-h * lam) ** (n_eval + 1)) / (1 + h * lam)
    return 2 * h * a**2 / (1 - a**2)


def _sample(sampler, **kw):
    """``(samples, messages of the RuntimeWarnings)`` of one call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sampler.sample(generator=torch.Generator().manual_seed(0), **kw)
    return out, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _counts(message: str) -> tuple[str, int, int, int, int, int, str]:
    """(sampler, chain-steps, most steps of one chain, chains, of chains, max_iter, remedy)"""
    m = re.search(PATTERN, message, re.S)
    assert m is not None, message
    name, *numbers, remedy = m.groups()
    return (name, *map(int, numbers), remedy)


def _check_variance(out: torch.Tensor, expected: tuple[float, float]) -> None:
    # the chains are independent: at the last step the sample variance of each coordinate
    # has a relative standard error sqrt(2 / n)
    rel = gaussian_tolerance(out.shape[0], z=4.0)[1]
    var = out.var(0)
    for v, e in zip(var.tolist(), expected):
        assert abs(v - e) <= rel * e, (var, expected)


def test_langevin_warns_once_with_the_counts_and_the_samples_are_the_truncated_scheme():
    sampler = LangevinDynamics(_model(), H, integrator="backward_euler_maruyama", dtype=F64)
    out, messages = _sample(sampler, n_samples=N_CHAINS, dim=2, n_steps=N_STEPS)
    assert len(messages) == 1
    name, total, most, chains, n, max_iter, remedy = _counts(messages[0])
    assert (name, chains, n, max_iter) == ("LangevinDynamics", N_CHAINS, N_CHAINS, 8)
    assert most <= N_STEPS and remedy == "lower step_size"
    # a step converges only when the stiff coordinate's base is within ~3e-6 of 0
    # (0.9^8 |b| / sqrt 2 <= 1e-6): almost never
    assert 0.999 * N_CHAINS * N_STEPS <= total <= N_CHAINS * N_STEPS
    # what was silently returned: the truncated iteration's law, three times the scheme's
    assert _truncated_variance(LAMS[1], 8) == pytest.approx(0.2056, abs=1e-4)
    _check_variance(out, tuple(_truncated_variance(lam, 8) for lam in LAMS))


def test_langevin_with_enough_evaluations_is_silent_and_matches_the_implicit_scheme():
    # rate h lam = 0.9 on the stiff coordinate: the last change is 0.9^n |b| / sqrt 2 for a
    # base b of that coordinate; |b| < 3 (sd ~0.5 over 1.2e5 draws): 0.9^n * 3 <= 1e-6
    tol = 1e-6
    max_iter = math.ceil(math.log(tol / 3) / math.log(H * LAMS[1]))
    integ = BackwardEulerMaruyamaIntegrator(
        dtype=F64, solver_max_iter=max_iter, solver_tol=tol, solver_check_every=10
    )
    sampler = LangevinDynamics(_model(), H, integrator=integ, dtype=F64)
    out, messages = _sample(sampler, n_samples=N_CHAINS, dim=2, n_steps=N_STEPS)
    assert messages == []
    assert _implicit_variance(LAMS[1]) == pytest.approx(0.0690, abs=1e-4)
    _check_variance(out, tuple(_implicit_variance(lam) for lam in LAMS))


class _JumpField(torch.nn.Module):
    """Velocity ``-lam(t) x`` with ``lam = 2`` before ``t = T_JUMP``, 30 from there."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        lam = torch.where(t >= T_JUMP, 30.0, 2.0).to(x.dtype)
        return -lam.reshape(-1, *([1] * (x.ndim - 1))) * x


T_JUMP, D_NORM, FLOW_STEPS = 0.51, 0.01, 48


def _flow_rates(times: list[float]) -> list[float]:
    r"""Contraction rate of each backward Euler step on the linear path: the SDE drift
    $v + D s$ with $s = -(x - t v)/(1 - t)$ and $v = -\lambda x$ is $-\Lambda(t) x$,
    $\Lambda = \lambda (1 + D t/(1 - t)) + D/(1 - t)$, evaluated at the step's end."""
    out = []
    for t0, t1 in zip(times, times[1:]):
        lam = 30.0 if t1 >= T_JUMP else 2.0
        out.append((t1 - t0) * (lam * (1 + D_NORM * t1 / (1 - t1)) + D_NORM / (1 - t1)))
    return out


def test_flow_sampler_sde_counts_the_steps_past_the_jump():
    fs = FlowSampler(
        _JumpField(), mode="sde", diffusion_form="constant", diffusion_norm=D_NORM,
        integrator="backward_euler_maruyama", dtype=F64, n_steps=FLOW_STEPS,
    )  # fmt: skip
    t1 = 1 - fs.last_step_size
    rates = _flow_rates([t1 * k / FLOW_STEPS for k in range(FLOW_STEPS + 1)])
    # every step is clearly converged (r^8 < 1e-8) or clearly not (r^8 > 1e-2, r < 1):
    # 8 dims per chain keep the base of a slow step far from 0
    slow = [r for r in rates if r > 0.5]
    assert all(r**8 < 1e-8 for r in rates if r <= 0.5) and all(0.55 < r < 0.8 for r in slow)
    x0 = torch.randn(300, 8, dtype=F64, generator=torch.Generator().manual_seed(1))
    out, messages = _sample(fs, x=x0)
    assert len(messages) == 1 and torch.isfinite(out).all()
    # the call has FLOW_STEPS steps: the count is of chain-steps, and a grid takes more steps
    expected = ("FlowSampler", 300 * len(slow), len(slow), 300, 300, 8, "raise n_steps")
    assert _counts(messages[0]) == expected
    # with enough evaluations for the slowest rate (and |b| < 1): silent
    fs.integrator = BackwardEulerMaruyamaIntegrator(
        dtype=F64, solver_max_iter=math.ceil(math.log(1e-6) / math.log(max(slow)))
    )
    assert _sample(fs, x=x0)[1] == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: LangevinDynamics(_model(), H, dtype=F64),
        lambda: LangevinDynamics(_model(), 0.05, integrator="heun", dtype=F64),
        lambda: FlowSampler(
            _JumpField(), mode="sde", diffusion_form="constant", diffusion_norm=D_NORM, dtype=F64
        ),
        lambda: FlowSampler(_JumpField(), dtype=F64, n_steps=5),
        lambda: FlowSampler(_JumpField(), integrator="rk4", dtype=F64, n_steps=5),
    ],
)
def test_explicit_integrators_never_warn_nor_count(make):
    sampler = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        sampler.sample(x=torch.ones(8, 2, dtype=F64), n_steps=FLOW_STEPS)
    ctx = SamplerContext(model_kwargs={}, generator=None, n_steps=5, thin=1, event_shape=(2,))
    assert sampler.init_state(torch.ones(8, 2, dtype=F64), ctx).n_unconverged is None
