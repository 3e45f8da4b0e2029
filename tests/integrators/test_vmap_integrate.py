"""`integrate` under `torch.func.vmap` (per-sample Jacobians of a flow map): the entry check
for NaN in the starting state read a value on the host, which vmap forbids ("calling
.item()"). Under vmap the check is skipped; values and Jacobians match a plain batch.
Adaptive solvers choose their steps from the values: they cannot run under vmap."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev, vmap

from torchebm.integrators import LeapfrogIntegrator, get_integrator

F64 = torch.float64
W = torch.tensor([[0.0, 1.0], [-1.0, -0.2]], dtype=F64)


def _field(x, t):
    return -0.7 * x + 0.3 * torch.sin(x) @ W.T


@pytest.mark.parametrize("name", ["euler", "heun", "rk4", "midpoint"])
def test_runge_kutta_per_sample_jacobian_under_vmap(name):
    integrator = get_integrator(name)
    options = {"step_size": 0.1, "n_steps": 7}  # (adaptive steps are data-dependent control)

    def flow(x):
        return integrator.integrate({"x": x}, drift=_field, **options)["x"]

    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    per_sample = vmap(jacrev(lambda z: flow(z[None])[0]))(x)
    xr = x.clone().requires_grad_(True)
    out = flow(xr)  # the batch's rows are independent: row j of each sample's Jacobian
    rows = [torch.autograd.grad(out[:, j].sum(), xr, retain_graph=True)[0] for j in range(2)]
    torch.testing.assert_close(per_sample, torch.stack(rows, 1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(vmap(lambda z: flow(z[None])[0])(x), out.detach())


def test_leapfrog_under_vmap_matches_the_batch():
    leapfrog = LeapfrogIntegrator()
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    p = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(2))

    def end(xs, ps):
        out = leapfrog.integrate({"x": xs, "p": ps}, 0.1, 5, gradient=lambda z, t: z)
        return out["x"]

    mapped = vmap(lambda a, b: end(a[None], b[None])[0])(x, p)
    torch.testing.assert_close(mapped, end(x, p))


def test_a_nan_start_outside_vmap_is_still_named():
    from torchebm.core.errors import NonFiniteError

    x = torch.tensor([[0.0, float("nan")]], dtype=F64)
    with pytest.raises(NonFiniteError, match=r"state\['x'\]"):
        get_integrator("rk4").integrate({"x": x}, step_size=0.1, n_steps=2, drift=_field)


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # torch: addcmul_ under vmap
def test_euler_maruyama_under_vmap_matches_the_batch():
    """A callable diffusion's range is checked after the loop (a host read): skipped under
    vmap. With zero diffusion the chain is the deterministic Euler one."""
    em = get_integrator("euler_maruyama")
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(3))

    def run(z):
        out = em.integrate(
            {"x": z}, step_size=0.1, n_steps=3, drift=_field, diffusion=lambda a, t: 0 * a
        )
        return out["x"]

    mapped = vmap(lambda z: run(z[None])[0], randomness="different")(x)
    torch.testing.assert_close(mapped, run(x))


def test_under_vmap_an_unbatched_entry_is_still_checked():
    """vmap over x only: p is a plain tensor, whose NaN is still named."""
    from torchebm.core.errors import NonFiniteError

    leapfrog = LeapfrogIntegrator()
    p = torch.tensor([[float("nan"), 0.0]], dtype=F64)
    x = torch.randn(3, 2, dtype=F64)

    def end(xs):
        return leapfrog.integrate({"x": xs[None], "p": p}, 0.1, 2, gradient=lambda z, t: z)["x"]

    with pytest.raises(NonFiniteError, match=r"state\['p'\]"):
        vmap(end)(x)


def test_leapfrog_with_a_mass_batched_by_vmap():
    leapfrog = LeapfrogIntegrator()
    x = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    masses = torch.tensor([[1.0, 2.0], [0.5, 1.0], [3.0, 0.25]], dtype=F64)

    def end(xs, mass):
        state = {"x": xs[None], "p": torch.ones(1, 2, dtype=F64)}
        return leapfrog.integrate(state, 0.1, 3, mass, gradient=lambda z, t: z)["x"][0]

    mapped = vmap(end)(x, masses)
    for i in range(3):
        torch.testing.assert_close(mapped[i], end(x[i], masses[i]))
