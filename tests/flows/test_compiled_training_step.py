"""A training step that the user compiles around a flow objective (EqM, implicit and with an
explicit energy, and Energy Matching with its Langevin negatives): the same loss and parameter
gradients as eager, and no tracing again on later calls (dynamo traced again, on every call,
each frame that calls ``torch.autograd.grad``, and `BaseLoss.apply_nan_policy` recompiled on
its call counter; ``fail_on_recompile`` turns such tracing into an error). The backend is
``"aot_eager"``: AOTAutograd, as Inductor, whose backward torch cannot differentiate again (the
explicit-energy EqM and Energy Matching failed in ``backward()``)."""

from __future__ import annotations

import pytest
import torch
from _support.compiled_steps import Field, Potential, assert_compiled_step_matches_eager

from torchebm.flows import EnergyMatchingLoss, EquilibriumMatchingLoss

pytestmark = pytest.mark.skipif(
    not hasattr(torch.compiler, "set_stance"),
    reason="torch.compiler.set_stance('fail_on_recompile') needs torch >= 2.6",
)

LOSSES = {
    "eqm": (Field, lambda m: EquilibriumMatchingLoss(m)),
    "eqm_dot_energy": (Field, lambda m: EquilibriumMatchingLoss(m, energy_type="dot")),
    "energy_matching": (
        Potential,
        lambda m: EnergyMatchingLoss(m, coupling="independent", n_langevin_steps=3),
    ),
}


@pytest.fixture(autouse=True)
def _fresh_compile_cache():
    torch.compiler.reset()
    yield
    torch.compiler.reset()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_compiled_step_matches_eager_without_tracing_again(name):
    make_model, make_loss = LOSSES[name]
    assert_compiled_step_matches_eager(
        make_model, make_loss, lambda: EquilibriumMatchingLoss(Field()), calls=6
    )
