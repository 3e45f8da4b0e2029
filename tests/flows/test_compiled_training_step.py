"""A training step that the user compiles around a flow objective (EqM, implicit and with an
explicit energy, and Energy Matching with its Langevin negatives): the same loss and parameter
gradients as eager, and no tracing again on later calls (dynamo traced again, on every call,
each frame that calls ``torch.autograd.grad``, and `BaseLoss.apply_nan_policy` recompiled on
its call counter; ``fail_on_recompile`` turns such tracing into an error). The backend is
``"aot_eager"``: AOTAutograd, as Inductor, whose backward torch cannot differentiate again (the
explicit-energy EqM and Energy Matching failed in ``backward()``)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from torchebm.flows import EnergyMatchingLoss, EquilibriumMatchingLoss

pytestmark = pytest.mark.skipif(
    not hasattr(torch.compiler, "set_stance"),
    reason="torch.compiler.set_stance('fail_on_recompile') needs torch >= 2.6",
)


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.SiLU(), nn.Linear(16, 2))

    def forward(self, x, t):
        return self.net(torch.cat([x, t.reshape(-1, 1)], dim=1))


class Potential(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.SiLU(), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


LOSSES = {
    "eqm": (Field, lambda m: EquilibriumMatchingLoss(m)),
    "eqm_dot_energy": (Field, lambda m: EquilibriumMatchingLoss(m, energy_type="dot")),
    "energy_matching": (
        Potential,
        lambda m: EnergyMatchingLoss(m, coupling="independent", n_langevin_steps=3),
    ),
}


def _step(loss_fn, model, x, seed):
    model.zero_grad(set_to_none=True)
    value = loss_fn(x, generator=torch.Generator().manual_seed(seed))
    value.backward()
    return value.detach()


@pytest.fixture(autouse=True)
def _fresh_compile_cache():
    torch.compiler.reset()
    yield
    torch.compiler.reset()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_compiled_step_matches_eager_without_tracing_again(name):
    make_model, make_loss = LOSSES[name]
    torch.manual_seed(0)
    eager_model = make_model()
    compiled_model = copy.deepcopy(eager_model)
    eager_loss, compiled_loss = make_loss(eager_model), make_loss(compiled_model)
    compiled_step = torch.compile(_step, backend="aot_eager")
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    for seed in range(6):
        if seed < 2:  # warm-up: dynamo compiles
            got = compiled_step(compiled_loss, compiled_model, x, seed)
        else:  # a library module built meanwhile (it bumps a process-wide counter that a
            EquilibriumMatchingLoss(Field())  # traced loss read: one recompile per step)
            with torch.compiler.set_stance("fail_on_recompile"):
                got = compiled_step(compiled_loss, compiled_model, x, seed)
        want = _step(eager_loss, eager_model, x, seed)
        torch.testing.assert_close(got, want)
        for (pname, p), q in zip(compiled_model.named_parameters(), eager_model.parameters()):
            torch.testing.assert_close(p.grad, q.grad, msg=f"{name}: gradient of {pname}")
