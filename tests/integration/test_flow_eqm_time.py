"""``FlowSampler(negate_velocity=True)`` samples an Equilibrium Matching field as EqM trains
it and as `EqMEnergy` evaluates it: at model time 0."""

from __future__ import annotations

import torch

from torchebm.models import EqMEnergy, TimeConditionedMLP
from torchebm.samplers import FlowSampler, GradientDescentSampler


def test_negated_velocity_calls_the_model_at_time_zero():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x, t):
            seen.append(t.clone())
            return 0.1 * x

    FlowSampler(Spy(), negate_velocity=True, integrator="euler").sample(
        x=torch.randn(3, 2), n_steps=4
    )
    assert len(seen) == 4 and all(torch.equal(t, torch.zeros(3)) for t in seen)
    seen.clear()  # without it the model gets the grid times
    FlowSampler(Spy(), integrator="euler").sample(x=torch.randn(3, 2), n_steps=4)
    assert [float(t[0]) for t in seen] == [0.0, 0.25, 0.5, 0.75]


def test_euler_flow_of_a_negated_eqm_field_is_gradient_descent_on_its_implicit_energy():
    # x <- x - dt f(x, 0) both ways; a time-conditioned field called at the grid times
    # (this library before the fix; torchebm 0.8.9 used 0) went elsewhere by up to 0.2
    torch.manual_seed(0)
    field = TimeConditionedMLP(in_dim=2, hidden_dim=32, depth=2)
    with torch.no_grad():  # leave the zero initialisation: the field must depend on t
        for p in field.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    n = 8
    flow = FlowSampler(field, negate_velocity=True, integrator="euler").sample(
        x=x0.clone(), n_steps=n
    )
    descent = GradientDescentSampler(EqMEnergy(field, "implicit"), step_size=1.0 / n)
    gd = descent.sample(x=x0.clone(), n_steps=n)
    torch.testing.assert_close(flow, gd, rtol=1e-5, atol=1e-6)
    t_half = torch.full((64,), 0.5)
    assert (field(x0, t_half) - field(x0, torch.zeros(64))).abs().max() > 1e-2  # t matters
