"""The numbers the samplers report about themselves, against independent references.

* ``"acceptance_rate"`` of HMC, RMHMC (constant metric) and AIS's HMC/MALA transitions on a
  Gaussian target from stationarity equals $\\mathbb E[\\min(1, e^{-\\Delta H})]$, computed
  by Monte Carlo in float64 with a hand-written leapfrog / MALA proposal (10^6 draws);
  tolerance: 4 binomial standard errors of the chains (the mean over steps of per-step
  rates has a variance at most that of one step) plus 4 of the reference.
* AIS's ``standard_error``/``effective_sample_size``: with one temperature (plain importance
  sampling from $\\mathcal N(0, I)$ to $\\mathcal N(0, s^2 I)$) their expectations have a
  closed form; with HMC transitions the standard error matches the spread of independent
  repeats (chi-square interval).
* Per-step diagnostics equal the batch statistics of the recorded trajectory (same seed),
  with ``thin > 1`` and with ``nan_policy="resample"`` restarts.
* Divergence records (``divergent_chains``, the warning, `NonFiniteError`'s ``indices``,
  ``steps``, ``windows``) equal a hand run of chains that turn NaN at a known step.
* Evaluation counters (``nfe`` of every integrator, ``"steps_used"``) equal a count made by
  a wrapper around the field.
"""

from __future__ import annotations

import math
import re
import warnings
from statistics import NormalDist

import pytest
import torch
from _support.leapfrog_reference import leapfrog_acceptance

from torchebm.core import BaseModel, GaussianModel
from torchebm.core.errors import NonFiniteError
from torchebm.integrators import INTEGRATOR_NAMES, BaseSymplecticIntegrator, get_integrator
from torchebm.samplers import (
    AnnealedImportanceSampling,
    FlowSampler,
    GradientDescentSampler,
    HamiltonianMonteCarlo,
    LangevinDynamics,
    NesterovSampler,
    RiemannianManifoldHMC,
)

F64 = torch.float64
SD = [1.0, 0.5, 2.0]  # target N(0, diag(SD^2))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gaussian(sd: list[float]) -> GaussianModel:
    cov = torch.diag(torch.tensor(sd, dtype=F64) ** 2)
    return GaussianModel(torch.zeros(len(sd), dtype=F64), cov, dtype=F64)


def _stationary(n: int, sd: list[float], seed: int) -> torch.Tensor:
    return torch.randn(n, len(sd), generator=_gen(seed), dtype=F64) * torch.tensor(sd, dtype=F64)


def _mala_acceptance(sd, eps, n=1_000_000):
    """The same for one MALA proposal ``y = x - eps grad E(x) + sqrt(2 eps) xi``."""
    g = _gen(54321)
    s2 = torch.tensor(sd, dtype=F64) ** 2
    x = torch.randn(n, len(sd), generator=g, dtype=F64) * s2.sqrt()
    y = x - eps * x / s2 + math.sqrt(2 * eps) * torch.randn(x.shape, generator=g, dtype=F64)

    def log_q(to, frm):  # log density of proposing `to` from `frm`, up to a constant
        return -((to - frm + eps * frm / s2) ** 2).sum(1) / (4 * eps)

    log_a = 0.5 * ((x**2 - y**2) / s2).sum(1) + log_q(x, y) - log_q(y, x)
    a = torch.exp(log_a).clamp(max=1.0)
    return float(a.mean()), float(a.std() / math.sqrt(n))


def _chi2_ratio_interval(dof: int, tail: float = 5e-4) -> tuple[float, float]:
    """Two-sided `1 - 2 tail` interval of chi2(dof) / dof (Wilson-Hilferty: ~1e-3 accurate)."""
    z, c = NormalDist().inv_cdf(1 - tail), 2 / (9 * dof)
    return (1 - c - z * math.sqrt(c)) ** 3, (1 - c + z * math.sqrt(c)) ** 3


def _assert_rate(observed: float, ref: tuple[float, float], n_chains: int) -> None:
    p, ref_se = ref
    tol = 4 * math.sqrt(p * (1 - p) / n_chains) + 4 * ref_se
    assert abs(observed - p) < tol, f"acceptance {observed:.4f}, expected {p:.4f} +- {tol:.4f}"


# ---------------------------------------------------------------------- acceptance rates
B = 4000


MASS = [1.5, 4.0, 0.5]  # with SD: angular frequencies 0.82, 1, 0.71


@pytest.mark.parametrize(("mass", "h", "n_leapfrog"), [(None, 0.7, 5), (MASS, 1.5, 3)])
def test_hmc_acceptance_rate_is_the_leapfrog_expectation_at_stationarity(mass, h, n_leapfrog):
    ref = leapfrog_acceptance(SD, mass or [1.0] * 3, h, n_leapfrog, seed=12345)
    assert 0.4 < ref[0] < 0.9  # a rate that a 5% error moves by more than the tolerance
    hmc = HamiltonianMonteCarlo(
        _gaussian(SD),
        step_size=h,
        n_leapfrog_steps=n_leapfrog,
        mass=None if mass is None else torch.tensor(mass, dtype=F64),
        dtype=F64,
    )
    _, diag = hmc.sample(
        x=_stationary(B, SD, 1), n_steps=3, return_diagnostics=True, generator=_gen(2)
    )
    _assert_rate(float(diag["acceptance_rate"].mean()), ref, B)


def test_rmhmc_acceptance_rate_with_a_constant_metric_is_the_leapfrog_expectation():
    # a constant metric G: the generalised leapfrog is the leapfrog with mass G
    h, n_leapfrog, g_diag = 1.5, 3, MASS
    ref = leapfrog_acceptance(SD, g_diag, h, n_leapfrog, seed=12345)
    assert 0.4 < ref[0] < 0.9
    metric = torch.diag(torch.tensor(g_diag, dtype=F64))
    rm = RiemannianManifoldHMC(
        _gaussian(SD),
        lambda x: metric.expand(x.shape[0], 3, 3),
        step_size=h,
        n_leapfrog_steps=n_leapfrog,
        dtype=F64,
    )
    _, diag = rm.sample(
        x=_stationary(B, SD, 3), n_steps=1, return_diagnostics=True, generator=_gen(4)
    )
    _assert_rate(float(diag["acceptance_rate"].mean()), ref, B)


@pytest.mark.parametrize("transition", ["hmc", "mala"])
def test_ais_acceptance_rate_and_log_z_when_every_temperature_is_the_base(transition):
    # target = base N(0, s^2 I): every f_beta is the base, the chains are stationary, every
    # weight is 1 (log Z = log Z0 exactly, standard error 0, ESS = n)
    s, d = 0.7, 2
    model = _gaussian([s] * d)
    ais = AnnealedImportanceSampling(
        model, n_intermediate=6, transition=transition, step_size=0.9 if transition == "hmc"
        else 0.4, n_leapfrog_steps=3, base_std=s,
    )  # fmt: skip
    r = ais.estimate(B, d, dtype=F64, generator=_gen(5))
    if transition == "hmc":
        ref = leapfrog_acceptance([s] * d, [1.0] * d, 0.9, 3, seed=12345)
    else:
        ref = _mala_acceptance([s] * d, 0.4)
    assert 0.4 < ref[0] < 0.9
    assert r.acceptance_rate is not None
    _assert_rate(r.acceptance_rate, ref, B)
    assert r.log_z == pytest.approx(0.5 * d * math.log(2 * math.pi * s * s), abs=1e-9)
    assert r.standard_error < 1e-9
    assert r.effective_sample_size == pytest.approx(B, rel=1e-9)


# ---------------------------------------------------------------------- AIS standard errors
def test_ais_reported_log_z_se_and_ess_are_the_formulas_of_its_log_weights():
    model = _gaussian([0.8, 0.8])
    r = AnnealedImportanceSampling(model, n_intermediate=5).estimate(
        300, 2, dtype=F64, generator=_gen(6)
    )
    w = [math.exp(v) for v in r.log_weights.tolist()]  # O(1) weights: plain float64 sums
    n = len(w)
    mean = sum(w) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in w) / (n - 1))
    assert r.log_z == pytest.approx(math.log(2 * math.pi) + math.log(mean), rel=1e-12)
    assert r.standard_error == pytest.approx(sd / (math.sqrt(n) * mean), rel=1e-10)
    assert r.effective_sample_size == pytest.approx(sum(w) ** 2 / sum(v * v for v in w), rel=1e-10)


def test_ais_standard_error_and_ess_of_one_temperature_match_the_closed_form():
    r"""Schedule ``[0, 1]``: importance sampling of $\mathcal N(0, s^2 I_D)$ from
    $\mathcal N(0, I_D)$, $w = e^{-|x|^2 (1/s^2 - 1)/2}$, relative variance
    $\rho = E[w^2]/E[w]^2 - 1 = (s^2(2 - s^2))^{-D/2} - 1$: the delta-method standard error
    of $\log\bar w$ is $\sqrt{\rho/n}$ and $\mathrm{ESS}/n \to 1/(1 + \rho)$."""
    s, d, n, repeats = 0.8, 2, 200, 1000
    rho = (s * s * (2 - s * s)) ** (-d / 2) - 1
    ais = AnnealedImportanceSampling(_gaussian([s] * d), schedule=[0.0, 1.0])
    g = _gen(7)
    res = [ais.estimate(n, d, dtype=F64, generator=g) for _ in range(repeats)]
    log_z = torch.tensor([r.log_z for r in res], dtype=F64)
    se = torch.tensor([r.standard_error for r in res], dtype=F64)
    ess = torch.tensor([r.effective_sample_size for r in res], dtype=F64) / n
    se_exact, ess_exact = math.sqrt(rho / n), 1 / (1 + rho)
    # the means of the reported values (their O(1/n) finite-sample bias is ~0.5% at n = 200)
    tol_se = 4 * float(se.std()) / math.sqrt(repeats) + 0.01 * se_exact
    assert abs(float(se.mean()) - se_exact) < tol_se
    tol_ess = 4 * float(ess.std()) / math.sqrt(repeats) + 0.005 * ess_exact
    assert abs(float(ess.mean()) - ess_exact) < tol_ess
    # the spread of the estimates: (R - 1) var / se^2 is chi-square with R - 1 dof
    ratio = float(log_z.var()) / se_exact**2
    lo, hi = _chi2_ratio_interval(repeats - 1)
    assert lo < ratio < hi
    log_z_exact = d * math.log(s) + 0.5 * d * math.log(2 * math.pi)
    assert abs(float(log_z.mean()) - log_z_exact) < 4 * se_exact / math.sqrt(repeats)


def test_ais_hmc_standard_error_matches_the_spread_of_independent_repeats():
    s, d, n, repeats = 0.8, 2, 200, 80
    ais = AnnealedImportanceSampling(
        _gaussian([s] * d), n_intermediate=8, step_size=0.5, n_leapfrog_steps=3
    )
    g = _gen(8)
    res = [ais.estimate(n, d, dtype=F64, generator=g) for _ in range(repeats)]
    log_z = torch.tensor([r.log_z for r in res], dtype=F64)
    se2 = float(torch.tensor([r.standard_error**2 for r in res], dtype=F64).mean())
    ratio = float(log_z.var()) / se2
    lo, hi = _chi2_ratio_interval(repeats - 1)
    assert lo < ratio < hi, f"var(log Z) / mean SE^2 = {ratio:.3f} outside ({lo:.3f}, {hi:.3f})"
    log_z_exact = d * math.log(s) + 0.5 * d * math.log(2 * math.pi)
    assert abs(float(log_z.mean()) - log_z_exact) < 4 * math.sqrt(se2 / repeats)


# ---------------------------------------------------------------------- diagnostics
C = 1.0  # the models below turn NaN (gradient) or -inf (energy) past x_0 = C


class Ramp(BaseModel):
    r"""$E(x) = |x|^2/2 - 2 x_0$ (finite everywhere, minimum at $x_0 = 2 > C$), or with
    ``slope_only`` $E(x) = -x_0$ (gradient descent moves $x_0$ by $+\eta$ a step); the
    gradient is NaN where $x_0 > C$."""

    def __init__(self, slope_only: bool = False) -> None:
        super().__init__(dtype=F64)
        self.slope_only = slope_only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.slope_only:
            return -x[:, 0]
        return 0.5 * x.square().sum(1) - 2.0 * x[:, 0]

    def gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        g = torch.zeros_like(x) if self.slope_only else x.clone()
        g[:, 0] -= 1.0 if self.slope_only else 2.0
        return torch.where(x[:, :1] > C, torch.full_like(g, math.nan), g)


class Sink(BaseModel):
    r"""$E(x) = |x|^2/2$, $-\infty$ where $x_0 > C$: HMC accepts a jump there (its energy is
    then non-finite, so ``"resample"`` restarts the chain)."""

    def __init__(self) -> None:
        super().__init__(dtype=F64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = 0.5 * x.square().sum(1)
        return torch.where(x[:, 0] > C, torch.full_like(e, -math.inf), e)


def _metric(x: torch.Tensor) -> torch.Tensor:
    return torch.diag(torch.tensor([1.0, 2.0, 0.5], dtype=x.dtype)).expand(x.shape[0], 3, 3)


class Field(torch.nn.Module):
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -x * (1 + t[:, None])


SAMPLERS = {
    "langevin": lambda m: LangevinDynamics(m, step_size=0.1, dtype=F64),
    "hmc": lambda m: HamiltonianMonteCarlo(m, step_size=0.5, n_leapfrog_steps=4, dtype=F64),
    "rmhmc": lambda m: RiemannianManifoldHMC(
        m, _metric, step_size=0.3, n_leapfrog_steps=2, dtype=F64
    ),
    "gd": lambda m: GradientDescentSampler(m, step_size=0.1, dtype=F64, grad_tol=0.3),
    "nesterov": lambda m: NesterovSampler(m, step_size=0.1, dtype=F64, grad_tol=0.3),
    "flow_rk4": lambda m: FlowSampler(Field(), integrator="rk4", dtype=F64),
    "flow_sde": lambda m: FlowSampler(Field(), mode="sde", dtype=F64),
}
CASES = [(name, "warn") for name in SAMPLERS] + [
    ("langevin", "resample"),
    ("gd", "resample"),
    ("hmc", "resample"),
]


def _changed(traj: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """`(B, n)` bool: whether each chain moved at each step (from a thin=1 trajectory)."""
    prev = torch.cat([x0[:, None], traj], 1)
    return (prev[:, 1:] != prev[:, :-1]).flatten(2).any(-1)


@pytest.mark.parametrize("thin", [1, 3])
@pytest.mark.parametrize(("name", "policy"), CASES)
def test_diagnostics_are_the_batch_statistics_of_the_recorded_trajectory(name, policy, thin):
    model = _gaussian(SD) if policy == "warn" else (Sink() if name == "hmc" else Ramp())
    sampler = SAMPLERS[name](model)
    n, x0 = 13, 0.6 * _stationary(48, SD, 9)
    x0[:, 0].clamp_(max=0.9)  # every start is a finite point of Ramp/Sink below C
    kw = dict(x=x0, n_steps=n, nan_policy=policy, return_trajectory=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        traj, diag = sampler.sample(**kw, thin=thin, return_diagnostics=True, generator=_gen(10))
        full = sampler.sample(**kw, generator=_gen(10))
    rows = torch.arange(thin, n + 1, thin)[: n // thin]  # step after which each row is kept
    assert torch.equal(full[:, rows - 1], traj)  # recording thinned changes nothing
    if policy == "resample":
        assert bool(sampler.divergent_chains.any())  # restarts happened
        assert torch.isfinite(traj).all()
    assert set(sampler.diagnostic_keys) <= set(diag)  # and every key has a reference below
    for key, value in diag.items():
        assert value.shape[0] == len(rows), key
        if key == "mean":
            ref = traj.mean(0)
        elif key == "var":
            ref = traj.var(0, unbiased=False)
        elif key == "energy":  # evaluated here, never the sampler's cached energies
            ref = torch.stack([model(traj[:, j]).mean() for j in range(len(rows))])
        elif key == "acceptance_rate":  # a continuous proposal moves the chain iff accepted
            if policy == "resample":  # a restart at the start hides from the trajectory:
                continue  # exact counts with restarts are in test_hmc_acceptance_restarts
            ref = _changed(full, x0).to(F64).mean(0)[rows - 1]
        elif key == "unconverged_rate":  # a constant metric: the implicit solves converge
            ref = torch.zeros(len(rows), dtype=F64)
        elif key == "steps_used":  # updates = steps that moved the chain
            ref = _changed(full, x0).long().cumsum(1)[:, rows - 1].T
        elif key == "t":  # the documented grid: ODE (0, 1); linear SDE (1e-3, 1 - delta)
            delta = sampler.last_step_size
            t0, t1 = (1e-3, 1.0 - delta) if name == "flow_sde" else (0.0, 1.0)
            times = [t0 + (t1 - t0) * k / n + (delta if k == n else 0.0) for k in rows.tolist()]
            ref = torch.tensor(times, dtype=F64)
        else:
            raise AssertionError(f"no reference for diagnostic {key!r}")
        torch.testing.assert_close(value.to(ref.dtype), ref, rtol=1e-12, atol=1e-12, msg=key)


# ---------------------------------------------------------------------- divergence records
STARTS = [0.0, 0.95, -5.0, 0.32, 0.5]  # x_0 of each chain; the gradient step moves it +0.1
ETA, N = 0.1, 12


def _first_nan_steps() -> list[int | None]:
    """Hand run of gradient descent on `Ramp(slope_only=True)`: the first step whose state is
    NaN (the step after the chain passed C), `None` if it never is within `N` steps."""
    out: list[int | None] = []
    for x in STARTS:
        first = None
        for k in range(1, N + 1):
            if x > C:
                first = k
                break
            x = x + ETA
        out.append(first)
    return out


def _windows(every: int, thin: int | None) -> dict[int, tuple[int, int]]:
    """Per divergent chain, `(first, last)`: the steps between its last observation where it
    was finite and its first where it was not. Observations: the checks (every `every`
    steps and the last) and, with a trajectory, the rows kept (every `thin` steps)."""
    seen = set(range(every, N + 1, every)) | {N}
    if thin is not None:
        seen |= set(range(thin, N // thin * thin + 1, thin))
    return {
        i: (1 + max([s for s in seen if s < k], default=0), min(s for s in seen if s >= k))
        for i, k in enumerate(_first_nan_steps())
        if k is not None
    }


def _parse(message: str) -> dict[int, tuple[int, int]]:
    found = re.findall(r"(\d+) \(steps? (\d+)(?:-(\d+))?\)", message)
    return {int(i): (int(lo), int(hi or lo)) for i, lo, hi in found}


@pytest.mark.parametrize("thin", [None, 1, 2, 3])
@pytest.mark.parametrize("every", [1, 4, 5])
def test_divergence_records_match_a_hand_run(every, thin):
    sampler = GradientDescentSampler(Ramp(slope_only=True), step_size=ETA, dtype=F64)
    x0 = torch.tensor([[v, 0.0] for v in STARTS], dtype=F64)
    kw = dict(x=x0, n_steps=N, nan_check_every=every)
    if thin is not None:
        kw.update(return_trajectory=True, thin=thin)
    expected = _windows(every, thin)
    assert sorted(expected) == [0, 1, 3, 4]
    with pytest.raises(NonFiniteError) as info:
        sampler.sample(**kw, nan_policy="raise")
    err = info.value
    assert err.indices == sorted(expected)
    assert err.windows == [expected[i] for i in err.indices]
    assert err.steps == [expected[i][1] for i in err.indices]
    assert err.step == min(hi for _, hi in expected.values())
    with pytest.warns(RuntimeWarning, match="diverged") as record:
        sampler.sample(**kw)
    assert _parse(str(record[0].message)) == expected
    assert sampler.divergent_chains.tolist() == [i in expected for i in range(len(STARTS))]


def test_resample_reports_each_chains_first_restart_step():
    sampler = GradientDescentSampler(Ramp(slope_only=True), step_size=ETA, dtype=F64)
    x0 = torch.tensor([[v, 0.0] for v in STARTS], dtype=F64)
    expected = _windows(1, None)
    with pytest.warns(RuntimeWarning, match="restarted") as record:
        out = sampler.sample(x=x0, n_steps=N, nan_policy="resample", nan_check_every=7)
    assert _parse(str(record[0].message)) == expected
    assert sampler.divergent_chains.tolist() == [i in expected for i in range(len(STARTS))]
    # hand run with restarts: a chain that turned NaN at step k is back at its start then
    for i, x in enumerate(STARTS):
        for _ in range(N):
            x = STARTS[i] if x > C else x + ETA
        assert float(out[i, 0]) == x


# ---------------------------------------------------------------------- evaluation counts
def _counting(t_shape: bool):
    calls = [0]

    def drift(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        tt = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1) if t_shape else 0.0
        return -x + torch.sin(3 * x) * tt

    return drift, calls


@pytest.mark.parametrize("name", INTEGRATOR_NAMES)
def test_integrator_nfe_is_the_number_of_field_evaluations(name):
    integ = get_integrator(name)
    x0 = torch.randn(5, 2, generator=_gen(11), dtype=F64)
    if "generalised" in name or "generalized" in name:
        counts = [0, 0]

        def force(x, p, t):
            counts[0] += 1
            return -x - 0.1 * x * p.square()

        def velocity(x, p, t):
            counts[1] += 1
            return p * (1 + 0.1 * x.square())

        integ.integrate({"x": x0, "p": x0.clone()}, 0.1, 5, force=force, velocity=velocity)
        assert integ.nfe == sum(counts) > 0
        return
    if isinstance(integ, BaseSymplecticIntegrator):
        drift, calls = _counting(t_shape=False)
        integ.integrate({"x": x0, "p": x0.clone()}, 0.1, 7, drift=drift)
        assert integ.nfe == calls[0] > 0
        return
    drift, calls = _counting(t_shape=True)
    integ.integrate({"x": x0}, 0.1, 7, drift=drift)
    assert integ.nfe == calls[0] > 0
    if getattr(integ, "error_weights", None) is not None:  # the adaptive path over a grid
        calls[0] = 0
        integ.integrate({"x": x0}, 0.05, t=torch.tensor([0.0, 2.0], dtype=F64), drift=drift)
        assert integ.nfe == calls[0] > 0


def test_steps_used_is_a_hand_count_of_the_updates():
    model = _gaussian([1.0, 1.0])  # gradient x: a GD step multiplies x by 1 - eta
    x0 = torch.tensor([[0.01, 0.0], [1.0, 0.0], [3.0, 1.0], [100.0, 0.0]], dtype=F64)
    gd = GradientDescentSampler(model, step_size=0.3, dtype=F64, grad_tol=0.05)
    _, diag = gd.sample(x=x0, n_steps=20, return_diagnostics=True)
    expected = []
    for row in x0.tolist():
        x, k = row, 0
        while k < 20 and math.hypot(*x) >= 0.05:
            x, k = [0.7 * v for v in x], k + 1
        expected.append(k)
    assert expected == [0, 9, 12, 20]
    assert diag["steps_used"][-1].tolist() == expected
