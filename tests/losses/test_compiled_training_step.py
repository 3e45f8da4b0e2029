"""A training step that the user compiles around a library loss: the same loss and parameter
gradients as eager, and no tracing again on later calls.

With torch 2.15 a compiled step around `DenoisingScoreMatching` took about 1,000 times its
eager time on every call: dynamo traced again each frame that calls ``torch.autograd.grad``,
`BaseLoss.apply_nan_policy` recompiled on its call counter (every policy but ``"ignore"``)
and PCD's negative phase on its replay-buffer pointer; with an AOTAutograd backend
(``"aot_eager"``, as Inductor) the objectives trained through grad_x E failed in ``backward()``
(a compiled backward cannot be differentiated again). ``fail_on_recompile`` turns any tracing
after the warm-up calls into an error.
"""

from __future__ import annotations

import pytest
import torch
from _support.compiled_steps import Field, assert_compiled_step_matches_eager, train_step
from _support.losses import MLPEnergy, TinyLangevin

from torchebm.losses import (
    ContrastiveDivergence,
    DenoisingScoreMatching,
    FlowMatchingLoss,
    PersistentContrastiveDivergence,
    ScoreMatching,
    SlicedScoreMatching,
)

pytestmark = pytest.mark.skipif(
    not hasattr(torch.compiler, "set_stance"),
    reason="torch.compiler.set_stance('fail_on_recompile') needs torch >= 2.6",
)


LOSSES = {
    "sm_exact": (MLPEnergy, lambda m, p: ScoreMatching(m, hessian_method="exact", nan_policy=p)),
    "sm_hutchinson": (
        MLPEnergy,
        lambda m, p: ScoreMatching(m, hessian_method="hutchinson", nan_policy=p),
    ),
    "ssm": (MLPEnergy, lambda m, p: SlicedScoreMatching(m, n_projections=2, nan_policy=p)),
    "dsm": (MLPEnergy, lambda m, p: DenoisingScoreMatching(m, noise_scale=0.1, nan_policy=p)),
    "cd": (
        MLPEnergy,
        lambda m, p: ContrastiveDivergence(m, TinyLangevin(m), k_steps=3, nan_policy=p),
    ),
    # a buffer of 40 rows and batches of 16: the pointer takes five values (0, 16, 32, 8, 24)
    "pcd": (
        MLPEnergy,
        lambda m, p: PersistentContrastiveDivergence(
            m, TinyLangevin(m), k_steps=3, buffer_size=40, nan_policy=p
        ),
    ),
    "flow_matching": (Field, lambda m, p: FlowMatchingLoss(m, nan_policy=p)),
}


@pytest.fixture(autouse=True)
def _fresh_compile_cache():
    torch.compiler.reset()
    yield
    torch.compiler.reset()


# the policy's own recompiles aside ("ignore" reads nothing): the gradient and the buffer
CASES = (
    [(name, "raise") for name in sorted(LOSSES)]
    + [("dsm", policy) for policy in ("warn", "deferred", "ignore")]
    + [("pcd", "ignore")]
)


@pytest.mark.parametrize(("name", "policy"), CASES)
def test_compiled_step_matches_eager_without_tracing_again(name, policy):
    make_model, make_loss = LOSSES[name]
    assert_compiled_step_matches_eager(make_model, lambda m: make_loss(m, policy), MLPEnergy)


def test_non_finite_loss_still_raises_inside_a_compiled_step():
    from torchebm.core.errors import NonFiniteError

    model = MLPEnergy()
    loss = DenoisingScoreMatching(model, noise_scale=0.1)
    compiled_step = torch.compile(train_step, backend="aot_eager")
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    compiled_step(loss, model, x, 0)
    with torch.no_grad():
        model.net[0].weight.fill_(float("inf"))
    with pytest.raises(NonFiniteError, match="DenoisingScoreMatching produced a non-finite"):
        compiled_step(loss, model, x, 1)


def test_a_loss_under_torch_export_does_not_recurse():
    # torch.compiler.is_compiling() is a process-wide flag: True under torch.export and, while
    # dynamo compiles, in every thread; apply_nan_policy's eager re-entry then called itself
    # until RecursionError
    model = Field()
    loss = FlowMatchingLoss(model, nan_policy="ignore")

    class Evaluate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.loss = loss

        def forward(self, x):
            return self.loss(x, generator=torch.Generator().manual_seed(0))

    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    exported = torch.export.export(Evaluate(), (x,), strict=False)
    torch.testing.assert_close(
        exported.module()(x), loss(x, generator=torch.Generator().manual_seed(0))
    )


@pytest.mark.parametrize("policy", ["raise", "warn", "deferred", "ignore"])
def test_eager_losses_with_the_compile_flag_set_elsewhere(monkeypatch, policy):
    # while another thread compiles, torch.compiler.is_compiling() is True in eager code too
    # (the flag is process-wide): every policy still gives the eager loss, no recursion
    model = MLPEnergy()
    loss = DenoisingScoreMatching(model, noise_scale=0.1, nan_policy=policy)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    want = loss(x, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    got = loss(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(got, want)
