"""A model's own ``gradient`` taken by autograd works inside ``sample()`` as it does when called
directly (the loop runs under ``torch.no_grad()``; autograd then raised a bare RuntimeError)."""

from __future__ import annotations

import torch
from _support.own_gradient import AutogradQuadratic

from torchebm.core import BaseModel
from torchebm.samplers import GradientDescentSampler


def test_an_autograd_gradient_override_runs_in_the_sampler_loop():
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    sampler = GradientDescentSampler(AutogradQuadratic(), step_size=0.1)
    with torch.no_grad():  # also when the user samples under no_grad
        out = sampler.sample(x=x0.clone(), n_steps=5)
    # gradient descent on the quadratic: x' = x - h x, five times
    torch.testing.assert_close(out, x0 * 0.9**5)
    assert not out.requires_grad


class _ClosedFormOverParameters(BaseModel):
    """$E(x) = \\tfrac12 w |x|^2$ with a closed-form ``gradient`` that reads the parameter."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return 0.5 * self.w * x.square().sum(-1)

    def gradient(self, x, model_kwargs=None):
        return self.w * x


def test_an_own_gradient_over_parameters_keeps_no_graph_in_the_sampler():
    # called in grad mode, it returned a gradient carrying the parameters' graph, which HMC
    # kept in its state between steps (586 MiB peak for 202 in the review's run)
    from torchebm.samplers import HamiltonianMonteCarlo

    sampler = HamiltonianMonteCarlo(_ClosedFormOverParameters(), step_size=0.1, n_leapfrog_steps=2)
    g = sampler.model_gradient(torch.ones(4, 3))
    assert not g.requires_grad and torch.equal(g, torch.full((4, 3), 2.0))


def test_an_autograd_gradient_override_runs_under_inference_mode():
    # enable_grad() alone does not leave inference mode: the override's requires_grad_ on
    # an inference tensor failed as before
    x0 = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    sampler = GradientDescentSampler(AutogradQuadratic(), step_size=0.1)
    with torch.inference_mode():
        out = sampler.sample(x=x0.clone(), n_steps=3)
    torch.testing.assert_close(out, x0 * 0.9**3)
