"""HMC reuses the leapfrog force at the end point: one gradient evaluation fewer per step."""

from __future__ import annotations

import pytest
import torch

from torchebm.core import GaussianModel, HarmonicModel
from torchebm.integrators import BaseSymplecticIntegrator, LeapfrogIntegrator
from torchebm.samplers import HamiltonianMonteCarlo


class PlainLeapfrog(BaseSymplecticIntegrator):
    """A separable integrator without ``initial_force``: HMC as it was before the reuse.

    It also hands the leapfrog the mass expanded to the event shape, as HMC used to.
    """

    separable = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.leapfrog = LeapfrogIntegrator(**kwargs)

    def step(self, state, step_size=None, mass=None, *, drift=None, safe=False):
        return self.integrate(state, step_size, 1, mass, drift=drift, safe=safe)

    def integrate(self, state, step_size=None, n_steps=None, mass=None, *, drift=None, safe=False):
        if isinstance(mass, torch.Tensor) and mass.ndim:
            mass = mass.expand(state["x"].shape[1:])
        out = self.leapfrog.integrate(state, step_size, n_steps, mass, drift=drift, safe=safe)
        return {"x": out["x"], "p": out["p"]}


def _count_gradients(model):
    calls = [0]
    gradient = model.gradient

    def counted(x, *args, **kwargs):
        calls[0] += 1
        return gradient(x, *args, **kwargs)

    model.gradient = counted
    return calls


@pytest.mark.parametrize(
    "model,x_shape,mass",
    [
        (
            GaussianModel(torch.tensor([1.0, -2.0]), torch.tensor([[1.0, 0.8], [0.8, 1.0]])),
            (64, 2),
            torch.tensor([2.0, 0.5]),
        ),
        (HarmonicModel(k=2.0), (32, 2, 3, 3), torch.tensor([1.0, 3.0]).reshape(2, 1, 1)),
    ],
    ids=["gaussian-2d", "images-channel-mass"],
)
@pytest.mark.parametrize("n_leapfrog", [1, 5])  # 1: step by step; 5: merged half kicks
def test_force_reuse_saves_one_gradient_per_step_with_identical_samples(
    model, x_shape, mass, n_leapfrog
):
    n_steps = 12
    x0 = torch.randn(x_shape, generator=torch.Generator().manual_seed(0))
    out, calls = {}, {}
    for name, integrator in (("reuse", None), ("plain", PlainLeapfrog())):
        counter = _count_gradients(model)
        hmc = HamiltonianMonteCarlo(
            model, step_size=0.45, n_leapfrog_steps=n_leapfrog, mass=mass, integrator=integrator
        )
        out[name], diag = hmc.sample(
            x=x0,
            n_steps=n_steps,
            generator=torch.Generator().manual_seed(1),
            return_diagnostics=True,
        )
        del model.gradient  # back to the class method
        calls[name] = counter[0]
        rate = diag["acceptance_rate"].mean().item()
        assert 0.2 < rate < 0.98  # both accepted and rejected proposals occur
    assert calls["plain"] == n_steps * (n_leapfrog + 1)
    assert calls["reuse"] == 1 + n_steps * n_leapfrog
    assert torch.equal(out["reuse"], out["plain"])


def test_resample_policy_reuses_the_starting_energies():
    """``nan_policy="resample"`` checks after every step; restarting no chain must not cost an
    energy evaluation, and the samples equal those of ``"raise"``."""
    calls = [0]

    class Counted(GaussianModel):  # counts energies; the closed-form gradient stays in use
        def closed_form_energy(self, x):
            calls[0] += 1
            return super().closed_form_energy(x)

    model = Counted(torch.tensor([1.0, -2.0]), torch.tensor([[1.0, 0.8], [0.8, 1.0]]))
    hmc = HamiltonianMonteCarlo(model, step_size=0.2, n_leapfrog_steps=3)
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    kw = {"x": x0, "n_steps": 12}
    a = hmc.sample(**kw, generator=torch.Generator().manual_seed(1))
    n_raise, calls[0] = calls[0], 0
    b = hmc.sample(**kw, generator=torch.Generator().manual_seed(1), nan_policy="resample")
    assert torch.equal(a, b)
    assert calls[0] == n_raise == 1 + 12  # the start, then one proposal per step
