"""HamiltonianMonteCarlo with a dense (D, D) mass matrix.

The sampler runs the leapfrog in the whitened coordinates of the mass's Cholesky factor;
these tests compare it with HMC written by hand in the direct form (momentum
``p = xi L^T``, drift ``x += h p M^{-1}``), an independent formulation of the same chain,
and check the stationary moments of a correlated Gaussian with tolerances from the sample
size.
"""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from torchebm.core import GaussianModel
from torchebm.core.errors import ConfigurationError, ShapeError
from torchebm.integrators import LeapfrogIntegrator
from torchebm.samplers import HamiltonianMonteCarlo

F64 = torch.float64


def _covariance() -> torch.Tensor:
    """A fixed correlated 3x3 covariance (condition number about 30)."""
    a = torch.tensor([[2.0, 0.0, 0.0], [1.5, 1.0, 0.0], [0.4, -0.6, 0.5]], dtype=F64)
    return a @ a.T


MEAN = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
#: a mass that is not the ideal inverse covariance (so that the test does not rely on it)
MASS = torch.tensor([[2.0, 0.6, 0.1], [0.6, 1.0, -0.2], [0.1, -0.2, 0.7]], dtype=F64)


def _hand_written_dense_hmc(x, model_cov, mass, h, n_leapfrog, n_steps, generator):
    """HMC of N(MEAN, model_cov) with mass matrix ``mass``, direct form, draws in the
    library's order (momentum normals, then one uniform per chain)."""
    precision = torch.linalg.inv(model_cov)
    chol, mass_inv = torch.linalg.cholesky(mass), torch.linalg.inv(mass)

    def energy(z):
        d = z - MEAN
        return 0.5 * ((d @ precision) * d).sum(1)

    def grad(z):
        return (z - MEAN) @ precision

    def kinetic(p):
        return 0.5 * ((p @ mass_inv) * p).sum(1)

    accepted = []
    for _ in range(n_steps):
        p = torch.randn(x.shape, generator=generator, dtype=F64) @ chol.T
        h0 = energy(x) + kinetic(p)
        xn, pn = x.clone(), p - 0.5 * h * grad(x)
        for i in range(n_leapfrog):
            xn = xn + h * (pn @ mass_inv)
            pn = pn - (h if i < n_leapfrog - 1 else 0.5 * h) * grad(xn)
        h1 = energy(xn) + kinetic(pn)
        u = torch.rand(x.shape[0], generator=generator, dtype=F64)  # (float64 chains)
        accept = torch.log1p(-u) <= h0 - h1
        x = torch.where(accept[:, None], xn, x)
        accepted.append(accept.to(F64).mean())
    return x, torch.stack(accepted)


def test_dense_mass_hmc_equals_hmc_written_by_hand_in_the_direct_form():
    cov = _covariance()
    model = GaussianModel(MEAN, cov, dtype=F64)
    h, n_leapfrog, n_steps = 0.25, 6, 15
    hmc = HamiltonianMonteCarlo(
        model, step_size=h, n_leapfrog_steps=n_leapfrog, mass=MASS, dtype=F64
    )
    x0 = torch.randn(500, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    out, diag = hmc.sample(
        x=x0, n_steps=n_steps, generator=torch.Generator().manual_seed(1), return_diagnostics=True
    )
    ref, accepted = _hand_written_dense_hmc(
        x0, cov, MASS, h, n_leapfrog, n_steps, torch.Generator().manual_seed(1)
    )
    assert (out - ref).abs().max() < 1e-10
    assert torch.allclose(diag["acceptance_rate"], accepted, atol=1e-12)
    assert 0.3 < float(accepted.mean()) < 0.999  # a test that accepts and rejects


class ForceFormLeapfrog(LeapfrogIntegrator):
    """A user's separable integrator in torchebm 0.8.9's form: ``drift`` (the force) in, a
    plain dict out (HMC then evaluates the end point's gradient again)."""

    def integrate(self, state, step_size=None, n_steps=None, mass=None, *, drift=None, safe=False):
        out = super().integrate(state, step_size, n_steps, mass, drift=drift, safe=safe)
        return {"x": out["x"], "p": out["p"]}


def test_a_force_form_integrator_with_a_dense_mass_runs_the_same_chain():
    cov = _covariance()
    model = GaussianModel(MEAN, cov, dtype=F64)
    hmc = HamiltonianMonteCarlo(
        model, 0.25, 6, mass=MASS, dtype=F64, integrator=ForceFormLeapfrog(dtype=F64)
    )
    x0 = torch.randn(300, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    out = hmc.sample(x=x0, n_steps=10, generator=torch.Generator().manual_seed(6))
    ref, _ = _hand_written_dense_hmc(x0, cov, MASS, 0.25, 6, 10, torch.Generator().manual_seed(6))
    assert (out - ref).abs().max() < 1e-10
    assert not torch.equal(out, x0)


def test_a_diagonal_matrix_gives_the_chain_of_the_diagonal_mass():
    # p = xi L^T with L = diag(sqrt m) is the diagonal path's p = xi * sqrt(m): same draws
    model = GaussianModel(MEAN, _covariance(), dtype=F64)
    m = torch.tensor([2.0, 0.5, 1.5], dtype=F64)
    x0 = torch.randn(300, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    runs = []
    for mass in (m, torch.diag(m)):
        hmc = HamiltonianMonteCarlo(model, step_size=0.2, n_leapfrog_steps=5, mass=mass, dtype=F64)
        runs.append(hmc.sample(x=x0, n_steps=10, generator=torch.Generator().manual_seed(3)))
    assert (runs[0] - runs[1]).abs().max() < 1e-10
    assert not torch.equal(runs[0], x0)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_dense_mass_hmc_keeps_a_correlated_gaussian(dtype):
    # chains started at exact draws stay exact draws; independent chains, so the sample
    # moments have the iid standard errors: 5 of them are under 5 % of each variance
    cov = _covariance()
    model = GaussianModel(MEAN, cov, dtype=dtype)
    n = 40_000
    g = torch.Generator().manual_seed(4)
    start = MEAN + torch.randn(n, 3, generator=g, dtype=F64) @ torch.linalg.cholesky(cov).T
    hmc = HamiltonianMonteCarlo(
        model, step_size=0.3, n_leapfrog_steps=8, mass=MASS.to(dtype), dtype=dtype
    )
    out, diag = hmc.sample(x=start.to(dtype), n_steps=10, generator=g, return_diagnostics=True)
    assert out.dtype == dtype
    out = out.to(F64)
    assert float(diag["acceptance_rate"].mean()) > 0.5
    assert (out - start).abs().amax(1).gt(1e-3).double().mean() > 0.5  # the chains moved
    sd = cov.diagonal().sqrt()
    z_mean = (out.mean(0) - MEAN) / (sd / math.sqrt(n))
    assert z_mean.abs().max() < 5, z_mean
    centred = out - out.mean(0)
    sample_cov = centred.T @ centred / (n - 1)
    se_cov = (torch.outer(cov.diagonal(), cov.diagonal()) + cov.square()).sqrt() / math.sqrt(n)
    z_cov = (sample_cov - cov) / se_cov
    assert z_cov.abs().max() < 5, z_cov


def test_dense_mass_runs_with_resampled_chains_and_conditioning_free_models():
    # nan_policy="resample" restarts chains through the typed state (whitening is shared)
    model = GaussianModel(MEAN, _covariance(), dtype=F64)
    hmc = HamiltonianMonteCarlo(
        model, step_size=0.2, n_leapfrog_steps=4, mass=MASS, nan_policy="resample", dtype=F64
    )
    out = hmc.sample(x=MEAN.expand(64, 3).clone(), n_steps=5, generator=torch.Generator())
    assert out.shape == (64, 3) and torch.isfinite(out).all()


def test_dense_mass_errors_name_the_mass():
    model = GaussianModel(MEAN, _covariance(), dtype=F64)
    nan = MASS.clone()
    nan[0, 1] = nan[1, 0] = float("nan")
    with pytest.raises(ConfigurationError, match="must be finite, got mass"):
        HamiltonianMonteCarlo(model, mass=nan)
    skew = MASS.clone()
    skew[0, 2] = -1.0
    with pytest.raises(ConfigurationError, match=r"must be symmetric, got max \|M - M\^T\| = 1.1"):
        HamiltonianMonteCarlo(model, mass=skew)
    indefinite = MASS.clone()
    indefinite[2, 2] = -0.7
    with pytest.raises(ConfigurationError, match="must be positive definite"):
        HamiltonianMonteCarlo(model, mass=indefinite)
    # a positive square matrix is only checked as a matrix when the chains are (B, D)
    positive = torch.tensor([[1.0, 2.0, 0.5], [2.0, 1.0, 0.5], [0.5, 0.5, 1.0]], dtype=F64)
    hmc = HamiltonianMonteCarlo(model, mass=positive)
    with pytest.raises(ConfigurationError, match="must be positive definite"):
        hmc.sample(x=torch.zeros(4, 3, dtype=F64), n_steps=1)
    # a matrix of another size than the chains' dimension
    hmc = HamiltonianMonteCarlo(model, mass=torch.eye(2, dtype=F64))
    with pytest.raises(ShapeError, match=r"a dense \(D, D\) mass matrix needs chains \(B, D\)"):
        hmc.sample(x=torch.zeros(4, 3, dtype=F64), n_steps=1)


def test_the_fused_backend_refuses_a_dense_mass():
    model = GaussianModel(MEAN, _covariance(), dtype=F64)
    hmc = HamiltonianMonteCarlo(model, mass=MASS, backend="fused")
    with pytest.raises(ConfigurationError, match="backend='fused' takes a scalar or diagonal"):
        hmc.sample(x=torch.zeros(4, 3, dtype=F64), n_steps=1)


def test_a_dense_mass_travels_in_the_state_dict():
    model = GaussianModel(MEAN, _covariance(), dtype=F64)
    saved = HamiltonianMonteCarlo(model, mass=MASS).state_dict()
    other = HamiltonianMonteCarlo(model, mass=torch.eye(3, dtype=F64))
    other.load_state_dict(saved)
    assert torch.equal(other.mass, MASS)


def test_a_float32_inverse_covariance_is_taken_with_its_rounding_asymmetry():
    # torch.linalg.inv in float32 leaves an asymmetry of about cond * eps: it was refused
    # at a relative 1e-6 (5 of 20 random 10-d covariances); a real asymmetry still is not
    g = torch.Generator().manual_seed(7)
    a = torch.randn(30, 30, generator=g, dtype=F64)
    cov = (a @ a.T / 30 + 0.01 * torch.eye(30, dtype=F64)).float()
    inverse = torch.linalg.inv(cov)  # its asymmetry depends on the LAPACK build (about
    # 1e-6 relative here): an antisymmetric part of 1e-4 relative stands for a worse one
    skew = torch.randn(30, 30, generator=g).triu(1)
    inverse = inverse + 1e-4 * inverse.abs().max() * (skew - skew.T) / skew.abs().max()
    asymmetry = (inverse - inverse.T).abs().max() / inverse.abs().max()
    assert 1e-6 < asymmetry < 1e-3  # refused by the first version, within 10 sqrt(eps) now
    model = GaussianModel(torch.zeros(30), cov)
    hmc = HamiltonianMonteCarlo(model, step_size=0.1, n_leapfrog_steps=3, mass=inverse)
    assert torch.isfinite(hmc.sample(dim=30, n_samples=8, n_steps=2)).all()
    lower = torch.linalg.cholesky(MASS)  # a factor passed for the matrix
    with pytest.raises(ConfigurationError, match=r"must be symmetric.*pass \(M \+ M.mT\) / 2"):
        HamiltonianMonteCarlo(model, mass=lower - 0.5)


def test_masses_the_chains_dtype_cannot_hold_are_named():
    model = GaussianModel(MEAN, _covariance(), dtype=F64)
    x = torch.zeros(4, 3)
    # a positive diagonal that underflows float32 is too small, not "<= 0"
    tiny = HamiltonianMonteCarlo(model, mass=torch.full((3,), 1e-50, dtype=F64))
    with pytest.raises(ConfigurationError, match="mass must be at least 1.18e-38"):
        tiny.sample(x=x, n_steps=1)
    # a dense matrix whose inverse factor overflows float32: every proposal was NaN
    dense = HamiltonianMonteCarlo(model, mass=1e-80 * MASS)
    with pytest.raises(ConfigurationError, match="overflows the chains' dtype torch.float32"):
        dense.sample(x=x, n_steps=1)


def test_a_one_by_one_matrix_is_the_mass_of_one_dimensional_chains():
    model = GaussianModel(torch.zeros(1, dtype=F64), torch.eye(1, dtype=F64) * 2, dtype=F64)
    x0 = torch.randn(200, 1, generator=torch.Generator().manual_seed(8), dtype=F64)
    runs = []
    for mass in (3.0, torch.tensor([[3.0]], dtype=F64)):
        hmc = HamiltonianMonteCarlo(model, step_size=0.3, n_leapfrog_steps=4, mass=mass, dtype=F64)
        runs.append(hmc.sample(x=x0, n_steps=5, generator=torch.Generator().manual_seed(9)))
    assert (runs[0] - runs[1]).abs().max() < 1e-12


def test_bad_square_masses_say_both_readings():
    model = GaussianModel(MEAN, _covariance(), dtype=F64)
    with pytest.raises(TypeError, match="mass must have a real"):
        HamiltonianMonteCarlo(model, mass=torch.eye(3, dtype=torch.complex64))
    # a per-element mass of 2-D events with a zero entry is read as a (bad) dense matrix
    with pytest.raises(ConfigurationError, match=r"symmetric.*a diagonal of 2-D events must be"):
        HamiltonianMonteCarlo(model, mass=torch.tensor([[1.0, 0.0], [2.0, 1.0]]))


def test_the_factors_follow_a_mass_changed_in_place():
    # the Cholesky factors are kept between calls while the mass stays the same
    model = GaussianModel(MEAN, _covariance(), dtype=F64)
    hmc = HamiltonianMonteCarlo(
        model, step_size=0.25, n_leapfrog_steps=6, mass=MASS.clone(), dtype=F64
    )
    x0 = torch.randn(100, 3, generator=torch.Generator().manual_seed(10), dtype=F64)
    hmc.sample(x=x0, n_steps=2)
    with torch.no_grad():
        hmc.mass.mul_(2.0)
    out = hmc.sample(x=x0, n_steps=5, generator=torch.Generator().manual_seed(11))
    ref, _ = _hand_written_dense_hmc(
        x0, _covariance(), 2.0 * MASS, 0.25, 6, 5, torch.Generator().manual_seed(11)
    )
    assert (out - ref).abs().max() < 1e-10
    copy = pickle.loads(pickle.dumps(hmc))
    assert torch.equal(
        copy.sample(x=x0, n_steps=5, generator=torch.Generator().manual_seed(11)), out
    )
