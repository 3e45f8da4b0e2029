"""HMC and RMHMC: exact moments (Metropolis-corrected), acceptance, mass, event shapes, options."""

from __future__ import annotations

import types
import warnings

import pytest
import torch
from samplers_helpers import gaussian_tolerance

import torchebm.samplers._backend as backend_mod
from torchebm.core import BaseModel, GaussianModel, HarmonicModel
from torchebm.core._module import _WARNED
from torchebm.core.errors import MissingDependencyError, NonFiniteError, ShapeError
from torchebm.integrators import GeneralisedLeapfrogIntegrator
from torchebm.samplers import HamiltonianMonteCarlo, RiemannianManifoldHMC

MU = torch.tensor([1.0, -2.0])
COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]])


def check_moments(x, mean, cov, z=5.0):
    """Mean and covariance within z standard errors of n iid samples."""
    x = x.double()
    mean, cov = mean.double(), cov.double()
    n = x.shape[0]
    d = torch.diagonal(cov)
    mean_ok = ((x.mean(0) - mean).abs() <= z * (d / n).sqrt()).all()
    se_cov = ((d[:, None] * d[None, :] + cov.square()) / n).sqrt()
    emp = torch.cov(x.T, correction=0)
    cov_ok = ((emp - cov).abs() <= z * se_cov).all()
    return bool(mean_ok and cov_ok), x.mean(0), emp


def test_recovers_a_correlated_gaussian_with_sane_acceptance():
    model = GaussianModel(MU, COV)
    hmc = HamiltonianMonteCarlo(model, step_size=0.3, n_leapfrog_steps=6)
    g = torch.Generator().manual_seed(0)
    x, diag = hmc.sample(n_samples=3000, n_steps=40, generator=g, return_diagnostics=True)
    ok, mean, cov = check_moments(x, MU, COV)
    rate = diag["acceptance_rate"].mean().item()
    print(f"HMC mean {mean.tolist()} cov {cov.flatten().tolist()} acceptance {rate:.3f}")
    assert ok, (mean, cov)
    assert 0.6 < rate < 0.99
    assert diag["acceptance_rate"].shape == (40,)


def test_metropolis_keeps_the_target_exact_at_a_coarse_step():
    # a step size at which the leapfrog energy error is large: without the accept/reject
    # test the chain would be biased; with it the target stays exact
    model = HarmonicModel(k=4.0)  # N(0, 1/4)
    hmc = HamiltonianMonteCarlo(model, step_size=0.8, n_leapfrog_steps=3)
    g = torch.Generator().manual_seed(1)
    x, diag = hmc.sample(dim=1, n_samples=4000, n_steps=60, generator=g, return_diagnostics=True)
    rate = diag["acceptance_rate"].mean().item()
    assert rate < 0.85  # rejections happen (all-accept leapfrog would give var 0.69)
    _, var_tol = gaussian_tolerance(4000)
    assert abs(x.var().item() / 0.25 - 1) < var_tol
    assert abs(x.mean().item()) < 5 * (0.25 / 4000) ** 0.5
    # the proposal alone (all accepted) would not preserve the variance
    tiny = HamiltonianMonteCarlo(model, step_size=1e-3, n_leapfrog_steps=2)
    _, d = tiny.sample(dim=1, n_samples=500, n_steps=3, generator=g, return_diagnostics=True)
    assert d["acceptance_rate"].min().item() > 0.99


@pytest.mark.parametrize("mass", [2, 2.0, torch.tensor([2.0, 0.5]), torch.tensor(3.0)])
def test_mass_forms_sample_the_same_target(mass):
    model = GaussianModel(MU, COV)
    # trajectory length 1.0 keeps every mode away from the pi-resonance (a mode whose
    # leapfrog phase is near pi flips sign each step and never mixes)
    hmc = HamiltonianMonteCarlo(model, step_size=0.2, n_leapfrog_steps=5, mass=mass)
    x = hmc.sample(n_samples=2000, n_steps=60, generator=torch.Generator().manual_seed(2))
    ok, mean, cov = check_moments(x, MU, COV)
    assert ok, (mass, mean, cov)


def test_mass_validation():
    for bad in (0, -1.0, torch.tensor([1.0, 0.0]), torch.tensor([float("nan")])):
        with pytest.raises(ValueError, match="mass"):
            HamiltonianMonteCarlo(HarmonicModel(), mass=bad)
    with pytest.raises(TypeError, match="mass"):
        HamiltonianMonteCarlo(HarmonicModel(), mass="heavy")
    hmc = HamiltonianMonteCarlo(HarmonicModel(), mass=torch.ones(3))
    with pytest.raises(ShapeError, match="mass"):
        hmc.sample(dim=2, n_samples=2, n_steps=1)


def test_image_shaped_states_with_a_per_channel_mass():
    model = HarmonicModel(k=2.0)  # every pixel ~ N(0, 1/2)
    mass = torch.tensor([1.0, 3.0]).reshape(2, 1, 1)
    hmc = HamiltonianMonteCarlo(model, step_size=0.3, n_leapfrog_steps=6, mass=mass)
    traj, diag = hmc.sample(
        dim=(2, 3, 3),
        n_samples=400,
        n_steps=30,
        thin=10,
        return_trajectory=True,
        return_diagnostics=True,
        generator=torch.Generator().manual_seed(3),
    )
    assert traj.shape == (400, 3, 2, 3, 3) and diag["mean"].shape == (3, 2, 3, 3)
    x = traj[:, -1].reshape(-1)
    _, var_tol = gaussian_tolerance(x.numel() // 2)  # pixels of a chain are independent
    assert abs(x.var().item() / 0.5 - 1) < var_tol
    assert diag["acceptance_rate"].mean() > 0.6


def test_dim_is_inferred_from_the_model_mean_only():
    hmc = HamiltonianMonteCarlo(GaussianModel(torch.zeros(3), torch.eye(3)), step_size=0.1)
    assert hmc.sample(n_samples=4, n_steps=2).shape == (4, 3)
    with pytest.raises(ValueError, match="cannot be inferred"):
        HamiltonianMonteCarlo(HarmonicModel()).sample(n_samples=4, n_steps=2)


def test_integrator_and_argument_validation():
    with pytest.raises(ValueError, match="n_leapfrog_steps"):
        HamiltonianMonteCarlo(HarmonicModel(), n_leapfrog_steps=0)
    with pytest.raises(TypeError, match="RiemannianManifoldHMC"):
        HamiltonianMonteCarlo(HarmonicModel(), integrator="generalised_leapfrog")
    with pytest.raises(TypeError, match="HamiltonianMonteCarlo"):
        HamiltonianMonteCarlo(HarmonicModel(), integrator="euler")
    with pytest.raises(ValueError, match="backend"):
        HamiltonianMonteCarlo(HarmonicModel(), backend="cuda")


def test_energy_function_alias():
    _WARNED.discard("HamiltonianMonteCarlo.energy_function")
    with pytest.warns(DeprecationWarning, match="model="):
        hmc = HamiltonianMonteCarlo(energy_function=HarmonicModel(), step_size=0.1)
    assert isinstance(hmc.model, HarmonicModel)


def test_fused_backend(monkeypatch):
    monkeypatch.setattr(backend_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="pip install torchebm-cuda"):
        HamiltonianMonteCarlo(HarmonicModel(), backend="fused").sample(dim=2, n_steps=1)
    monkeypatch.setattr(backend_mod, "_cuda_module", lambda: types.SimpleNamespace())
    with pytest.raises(NotImplementedError, match="fused_leapfrog_step"):
        HamiltonianMonteCarlo(HarmonicModel(), backend="fused").sample(dim=2, n_steps=1)
    calls = []

    def fused_leapfrog_step(x, p, grad_fn, step_size, n_steps=1, mass=None, grad=None):
        grad_fn = grad_fn.gradient if isinstance(grad_fn, BaseModel) else grad_fn
        calls.append((n_steps, grad is not None))
        g = grad_fn(x) if grad is None else grad
        p = p - 0.5 * step_size * g
        for i in range(n_steps):
            x = x + step_size * p
            g = grad_fn(x)
            p = p - (step_size if i < n_steps - 1 else 0.5 * step_size) * g
        return x, p, g

    fake = types.SimpleNamespace(fused_leapfrog_step=fused_leapfrog_step)
    monkeypatch.setattr(backend_mod, "_cuda_module", lambda: fake)
    x0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    kw = dict(step_size=0.2, n_leapfrog_steps=4)
    fused = HamiltonianMonteCarlo(HarmonicModel(), backend="fused", **kw).sample(
        x=x0, n_steps=3, generator=torch.Generator().manual_seed(1)
    )
    eager = HamiltonianMonteCarlo(HarmonicModel(), **kw).sample(
        x=x0, n_steps=3, generator=torch.Generator().manual_seed(1)
    )
    assert calls == [(4, True)] * 3  # the cached gradient is always handed over
    torch.testing.assert_close(fused, eager)


# ----------------------------------------------------------------------------- RMHMC
def test_rmhmc_with_a_constant_metric_samples_the_target():
    model = GaussianModel(MU, COV)
    metric = lambda x: torch.diag(torch.tensor([2.0, 0.5])).expand(x.shape[0], 2, 2)  # noqa: E731
    rm = RiemannianManifoldHMC(model, metric, step_size=0.2, n_leapfrog_steps=5)
    x, diag = rm.sample(
        n_samples=1500,
        n_steps=25,
        generator=torch.Generator().manual_seed(4),
        return_diagnostics=True,
    )
    ok, mean, cov = check_moments(x, MU, COV)
    assert ok, (mean, cov)
    assert diag["acceptance_rate"].mean() > 0.6


def test_rmhmc_position_dependent_metric_needs_the_log_determinant():
    # G(x) = (1 + |x|^2) I on a standard normal target: the 1/2 log|G| term of H is what
    # keeps the target exact; the variance would be visibly off without it
    model = HarmonicModel()

    def metric(x):
        s = 1.0 + x.square().sum(-1)
        return s[:, None, None] * torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2)

    integ = GeneralisedLeapfrogIntegrator(solver_max_iter=6)
    rm = RiemannianManifoldHMC(model, metric, step_size=0.4, n_leapfrog_steps=4, integrator=integ)
    x, diag = rm.sample(
        dim=2,
        n_samples=800,
        n_steps=25,
        generator=torch.Generator().manual_seed(5),
        return_diagnostics=True,
    )
    ok, mean, cov = check_moments(x, torch.zeros(2), torch.eye(2))
    print(
        f"RMHMC mean {mean.tolist()} cov {cov.flatten().tolist()} acc {diag['acceptance_rate'].mean():.3f}"
    )
    assert ok, (mean, cov)


def test_rmhmc_validation_and_deprecated_solver_kwargs():
    metric = lambda x: torch.eye(2).expand(x.shape[0], 2, 2)  # noqa: E731
    with pytest.raises(TypeError, match="metric_fn"):
        RiemannianManifoldHMC(HarmonicModel(), metric_fn=3)
    with pytest.raises(TypeError, match="non-separable"):
        RiemannianManifoldHMC(HarmonicModel(), metric, integrator="leapfrog")
    with pytest.raises(ValueError, match="n_leapfrog_steps"):
        RiemannianManifoldHMC(HarmonicModel(), metric, n_leapfrog_steps=0)
    _WARNED.discard("RiemannianManifoldHMC.solver_kwargs")
    with pytest.warns(DeprecationWarning, match="GeneralisedLeapfrogIntegrator"):
        rm = RiemannianManifoldHMC(HarmonicModel(), metric, solver_max_iter=3)
    assert rm.integrator.solver_max_iter == 3 and rm.integrator.solver_tol == 1e-6
    with pytest.raises(ValueError, match="integrator"):
        RiemannianManifoldHMC(
            HarmonicModel(), metric, solver_tol=1e-3, integrator=GeneralisedLeapfrogIntegrator()
        )
    with pytest.raises(ShapeError, match="metric_fn"):
        RiemannianManifoldHMC(HarmonicModel(), metric).sample(dim=3, n_samples=2, n_steps=1)


def test_rmhmc_metric_of_another_dtype_is_named():
    # a float32 metric with float64 chains failed inside torch.bmm ("expected scalar type
    # Float but found Double"), naming neither metric_fn nor the dtypes
    model = GaussianModel(torch.zeros(2), torch.eye(2), dtype=torch.float64)
    metric = lambda x: torch.eye(2).expand(x.shape[0], 2, 2).clone()  # noqa: E731 float32
    rm = RiemannianManifoldHMC(
        model, metric, step_size=0.2, n_leapfrog_steps=3, dtype=torch.float64
    )
    with pytest.raises(
        TypeError, match=r"metric_fn\(x\) returned dtype torch.float32 .* torch.float64"
    ):
        rm.sample(dim=2, n_samples=4, n_steps=2)
    ok = lambda x: torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2).clone()  # noqa: E731
    rm = RiemannianManifoldHMC(model, ok, step_size=0.2, n_leapfrog_steps=3, dtype=torch.float64)
    assert rm.sample(dim=2, n_samples=4, n_steps=2).dtype == torch.float64


def test_rmhmc_conditioning_reaches_the_force():
    class Shifted(BaseModel):
        def forward(self, x, shift=None):
            return 0.5 * (x - shift).square().sum(-1)

    metric = lambda x: torch.eye(2).expand(x.shape[0], 2, 2)  # noqa: E731
    rm = RiemannianManifoldHMC(Shifted(), metric, step_size=0.3, n_leapfrog_steps=5)
    shift = torch.full((500, 2), 4.0)
    x = rm.sample(
        x=torch.zeros(500, 2), n_steps=20, model_kwargs={"shift": shift},
        generator=torch.Generator().manual_seed(6),
    )  # fmt: skip
    assert (x.mean(0) - 4.0).abs().max() < 5 * (1 / 500) ** 0.5


@pytest.mark.parametrize("policy", ["warn", "raise", "resample"])
def test_a_chain_whose_cached_gradient_is_nan_is_reported_not_left_stuck(policy):
    # E = |x|: finite energy at 0, autograd gradient NaN there; the chain rejected every
    # move from its start and nothing reported it (divergent_chains all False, no warning)
    def norm(x):
        return x.square().sum(-1).sqrt()

    x0 = torch.zeros(4, 2)
    x0[2:] = 1.0
    sampler = HamiltonianMonteCarlo(norm, step_size=0.1, n_leapfrog_steps=5, nan_policy=policy)
    run = lambda: sampler.sample(x=x0, n_steps=20, generator=torch.Generator().manual_seed(0))  # noqa: E731
    if policy == "raise":
        with pytest.raises(NonFiniteError, match="2 of 4 chains"):
            run()
        return
    with pytest.warns(RuntimeWarning, match="2 of 4 chains") as record:
        out = run()
    assert torch.equal(out[:2], x0[:2]) and sampler.divergent_chains.tolist() == [1, 1, 0, 0]
    if policy == "resample":
        assert "energy or its gradient is NaN/inf" in str(record[0].message)


def test_rmhmc_reports_a_start_where_the_gradient_is_nan():
    # the two chains at 0 never moved; only the implicit solves were blamed
    def norm(x):
        return x.square().sum(-1).sqrt()

    x0 = torch.zeros(4, 2)
    x0[2:] = 1.0
    sampler = RiemannianManifoldHMC(
        norm, metric_fn=lambda x: torch.eye(2).expand(len(x), 2, 2), step_size=0.1
    )
    with pytest.warns(RuntimeWarning, match="2 of 4 chains diverged"):
        sampler.sample(x=x0, n_steps=20, generator=torch.Generator().manual_seed(0))
    assert sampler.divergent_chains.tolist() == [1, 1, 0, 0]


def test_a_call_in_which_no_chain_accepts_anything_warns():
    # step 50 on N(0, I): every trajectory ends at a non-finite or far higher Hamiltonian and
    # is rejected; 0 of 500 chains moved in 200 steps, with no warning under any nan_policy
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    x0 = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    stuck = HamiltonianMonteCarlo(model, step_size=50.0, n_leapfrog_steps=10)
    with pytest.warns(RuntimeWarning, match=r"none of the 500 chains accepted any of its 200"):
        out = stuck.sample(x=x0, n_steps=200, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, x0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a working step size, and a short call, do not warn
        HamiltonianMonteCarlo(model, step_size=0.1).sample(x=x0, n_steps=200)
        stuck.sample(x=x0[:5], n_steps=10)  # 50 proposals: too few to call it stuck
