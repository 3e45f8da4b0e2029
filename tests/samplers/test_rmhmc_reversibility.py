"""RMHMC with an implicit integrator whose fixed-point solves do not all converge.

An unconverged generalised-leapfrog step is not time-reversible, so the Metropolis test
cannot correct it: before the fix, chains started from exact draws of a Gaussian lost 4%
of their total variance in 15 steps at step size 0.6 (8 fixed-point iterations, the
default). RMHMC now rejects every proposal whose trajectory, or the reverse trajectory
from its end point, did not converge or did not come back, and reports them.
"""

from __future__ import annotations

import math
import warnings

import torch

from torchebm.core import GaussianModel
from torchebm.samplers import RiemannianManifoldHMC

F64 = torch.float64
MU = torch.tensor([1.0, -2.0], dtype=F64)
COV = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=F64)  # tr = 3.0, tr(COV^2) = 6.28


def _metric(x: torch.Tensor) -> torch.Tensor:
    """A position-dependent SPD metric `(B, 2, 2)` (grows with the distance to `MU`)."""
    d = x - MU
    eye = torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2)
    radial = eye * (0.5 + d.square().sum(-1))[:, None, None]
    return radial + 0.3 * torch.einsum("bi,bj->bij", d, d)


def _run_from_exact_draws(n: int, step_size: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    x0 = MU + torch.randn(n, 2, dtype=F64, generator=g) @ torch.linalg.cholesky(COV).T
    rm = RiemannianManifoldHMC(
        GaussianModel(MU, COV, dtype=F64),
        _metric,
        step_size=step_size,
        n_leapfrog_steps=3,
        dtype=F64,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, diag = rm.sample(x=x0, n_steps=15, return_diagnostics=True, generator=g)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    return rm, x, diag, messages


def test_rmhmc_keeps_the_target_invariant_when_solves_do_not_converge():
    # Started from n exact draws, an invariant kernel leaves n iid draws of N(MU, COV) after
    # any number of steps. Total variance: sd of its estimate sqrt(2 tr(COV^2) / n)
    # = sqrt(12.56 / 10000) = 0.0354, so 4 SE = 0.142 (4.7% of 3.0). Central mass: the
    # Mahalanobis distance m is chi^2_2, P(m <= 1/2) = 1 - exp(-1/4) = 0.2212, binomial
    # SE sqrt(0.2212 * 0.7788 / n) = 0.0042, so 4 SE = 0.017 (7.5% of 0.221). Before the
    # fix this run gave total variance 2.919 (-2.3 SE: its 4% drift needs ~40k chains to
    # fail at 4 SE) and central mass 0.2421 (+5.0 SE: chains piled up at the centre); after
    # it 3.040 (+1.1 SE) and 0.2245 (+0.8 SE).
    n = 10_000
    rm, x, diag, messages = _run_from_exact_draws(n, step_size=0.6, seed=0)
    total_var = float(diag["var"][-1].sum())
    se_var = math.sqrt(2 * float(torch.trace(COV @ COV)) / n)
    assert abs(total_var - 3.0) <= 4 * se_var, (total_var, se_var)
    d = x - MU
    m = (d @ torch.linalg.inv(COV) * d).sum(1)
    p0 = 1 - math.exp(-0.25)
    central = float((m <= 0.5).double().mean())
    assert abs(central - p0) <= 4 * math.sqrt(p0 * (1 - p0) / n), central
    # with 8 fixed-point iterations most trajectories at this step size do not converge:
    # they are rejected, counted and reported (once per call)
    rate = diag["unconverged_rate"]
    assert rate.shape == (15,) and 0.3 < float(rate.mean()) < 1.0
    assert float(diag["acceptance_rate"].max()) <= 1.0 - float(rate.min()) + 1e-12
    counts = rm.unconverged_proposals
    assert counts.shape == (n,) and counts.dtype == torch.int64
    assert int(counts.sum()) == round(float(rate.sum()) * n)  # thin=1: every step recorded
    assert len(messages) == 1 and f"{int(counts.sum())} proposals" in messages[0]
    assert "solver_max_iter" in messages[0] and "step_size" in messages[0]
    assert "use float64" not in messages[0]  # float64 chains are not told to use float64


def test_rmhmc_converging_solves_reject_nothing_and_do_not_warn():
    # a constant metric makes H separable: every solve converges at its second iteration
    model = GaussianModel(MU, COV, dtype=F64)
    metric = lambda x: 2.0 * torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2)  # noqa: E731
    rm = RiemannianManifoldHMC(model, metric, step_size=0.3, n_leapfrog_steps=4, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _, diag = rm.sample(
            n_samples=64,
            n_steps=5,
            return_diagnostics=True,
            generator=torch.Generator().manual_seed(3),
        )
    assert torch.equal(diag["unconverged_rate"], torch.zeros(5, dtype=F64))
    assert int(rm.unconverged_proposals.sum()) == 0
    assert float(diag["acceptance_rate"].mean()) > 0.5


def test_rmhmc_on_a_linear_energy_is_the_exact_hamiltonian_flow():
    """The linear energy $E(x) = x_1 + x_2$ has a constant gradient, which autograd returns as
    a broadcast view (RMHMC's force once negated it in place and failed). With a constant
    metric $I$ the leapfrog is exact: every proposal is accepted and one iteration of
    $L$ steps of size $\\varepsilon$ gives $x_0 + L\\varepsilon z - (L\\varepsilon)^2 / 2$,
    $z \\sim \\mathcal N(0, I)$."""

    class Linear(torch.nn.Module):
        def forward(self, x):
            return x.sum(1)

    n, eps, n_leap = 20_000, 0.1, 3
    sampler = RiemannianManifoldHMC(
        Linear(),
        step_size=eps,
        n_leapfrog_steps=n_leap,
        metric_fn=lambda x: torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2),
        dtype=torch.float64,
    )
    gen = torch.Generator().manual_seed(0)
    x0 = torch.zeros(n, 2, dtype=torch.float64)
    x, diag = sampler.sample(x0, n_steps=1, generator=gen, return_diagnostics=True)
    assert float(diag["acceptance_rate"][0]) == 1.0
    span = n_leap * eps
    expected_mean = torch.full((2,), -0.5 * span**2, dtype=torch.float64)
    tol = 5 * span / math.sqrt(n)  # five standard errors of the mean
    assert torch.allclose(x.mean(0), expected_mean, atol=tol)
    assert torch.allclose(x.var(0), torch.full((2,), span**2, dtype=torch.float64), rtol=0.05)


def test_rmhmc_reports_unconverged_solves_once_and_the_integrator_stays_silent():
    # GeneralisedLeapfrogIntegrator.integrate warns about unconverged solves, but not in a
    # sampler's loop: RMHMC rejects those proposals and reports them once per sample() call
    # (two integrate calls per step here would otherwise add 2 * n_steps warnings)
    rm, _, _, messages = _run_from_exact_draws(200, step_size=0.6, seed=3)
    assert int(rm.unconverged_proposals.sum()) > 0
    assert len(messages) == 1 and messages[0].startswith("RiemannianManifoldHMC:"), messages
