"""HMC evaluates each gradient and energy once, and its chain is a transparent reference's.

The reference below is the algorithm written out by hand with the same operations in the
same order (momentum draw, merged leapfrog kicks, Metropolis draw), so the sampler's
chain must equal it bit for bit: any change of the maths or of the random draws shows.
"""

from __future__ import annotations

import pytest
import torch

from torchebm.core import BaseModel, GaussianModel
from torchebm.samplers import HamiltonianMonteCarlo

MEAN = torch.tensor([1.0, -2.0])
COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]])


class Counted(BaseModel):
    """A user model (its own `gradient`) wrapping a Gaussian, counting each call."""

    def __init__(self):
        super().__init__()
        self.inner = GaussianModel(MEAN, COV)
        self.energies = 0
        self.gradients = 0

    def forward(self, x):
        self.energies += 1
        return self.inner(x)

    def gradient(self, x, model_kwargs=None):
        self.gradients += 1
        return self.inner.gradient(x)


@pytest.mark.parametrize("n_leapfrog", [1, 6])
def test_one_gradient_per_leapfrog_step_and_one_energy_per_iteration(n_leapfrog):
    model = Counted()
    hmc = HamiltonianMonteCarlo(model, step_size=0.3, n_leapfrog_steps=n_leapfrog)
    n_steps = 9
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    _, diag = hmc.sample(
        x=x0, n_steps=n_steps, generator=torch.Generator().manual_seed(1), return_diagnostics=True
    )
    rate = diag["acceptance_rate"].mean().item()
    assert 0.05 < rate < 0.99  # accepted and rejected proposals both occur
    assert model.gradients == 1 + n_steps * n_leapfrog  # the start, then L per trajectory
    assert model.energies == 1 + n_steps  # the start, then the proposal's end point


def _reference_hmc(model, x, n_steps, n_lf, h, generator, mass=None):
    """HMC by hand: p ~ N(0, M), leapfrog with merged half kicks starting from the kept
    gradient, Metropolis test `log u < H - H'`; gradient and energy of the accepted end
    point kept for the next iteration."""
    x = x.clone()
    energy, grad = model(x), model.gradient(x)
    p = torch.empty_like(x)
    for _ in range(n_steps):
        p.normal_(generator=generator)
        if mass is not None:
            p.mul_(mass.sqrt())
        k = p.square() if mass is None else p.square() / mass
        h_cur = energy + k.sum(dim=1).mul_(0.5)
        q = torch.add(p, grad, alpha=-0.5 * h)
        for i in range(n_lf):
            if i == 0:
                xn = (
                    torch.add(x, q, alpha=h) if mass is None else torch.addcdiv(x, q, mass, value=h)
                )
            elif mass is None:
                xn.add_(q, alpha=h)
            else:
                xn.addcdiv_(q, mass, value=h)
            g = model.gradient(xn)
            q.add_(g, alpha=-h if i < n_lf - 1 else -0.5 * h)
        u = model(xn)
        k = q.square() if mass is None else q.square() / mass
        log_ratio = h_cur - (u + k.sum(dim=1).mul_(0.5))
        accept = (
            torch.empty_like(log_ratio).uniform_(generator=generator).neg_().log1p_() <= log_ratio
        )
        x = torch.where(accept[:, None], xn, x)
        energy = torch.where(accept, u, energy)
        grad = torch.where(accept[:, None], g, grad)
    return x


@pytest.mark.parametrize("mass", [None, torch.tensor([2.0, 0.5])], ids=["unit", "diagonal"])
@pytest.mark.parametrize("n_leapfrog", [1, 5])
def test_chain_is_bit_identical_to_the_reference(mass, n_leapfrog):
    model = GaussianModel(MEAN, COV)
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    hmc = HamiltonianMonteCarlo(model, step_size=0.4, n_leapfrog_steps=n_leapfrog, mass=mass)
    out, diag = hmc.sample(
        x=x0, n_steps=25, generator=torch.Generator().manual_seed(3), return_diagnostics=True
    )
    rate = diag["acceptance_rate"].mean().item()
    assert 0.2 < rate < 0.98
    with torch.no_grad():
        ref = _reference_hmc(model, x0, 25, n_leapfrog, 0.4, torch.Generator().manual_seed(3), mass)
    assert torch.equal(out, ref)
