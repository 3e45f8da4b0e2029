"""A training step compiled around a loss, checked against eager (tests/losses, tests/flows):
the same loss and parameter gradients at every call, and no tracing after the warm-up calls
(``torch.compiler.set_stance("fail_on_recompile")``, torch >= 2.6)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["Field", "Potential", "assert_compiled_step_matches_eager", "train_step"]


class Field(nn.Module):
    """A small time-conditioned field ``f(x, t)`` on 2-D inputs."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.SiLU(), nn.Linear(16, 2))

    def forward(self, x, t):
        return self.net(torch.cat([x, t.reshape(-1, 1)], dim=1))


class Potential(nn.Module):
    """A small scalar potential ``V(x) -> (B,)`` on 2-D inputs."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.SiLU(), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


def train_step(loss_fn: Any, model: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    """Zero the gradients, ``loss_fn(x)`` with a generator seeded ``seed``, backward."""
    model.zero_grad(set_to_none=True)
    out = loss_fn(x, generator=torch.Generator().manual_seed(seed))
    value = out[0] if isinstance(out, tuple) else out
    value.backward()
    return value.detach()


def assert_compiled_step_matches_eager(
    make_model: Callable[[], nn.Module],
    make_loss: Callable[[nn.Module], Any],
    build_between: Callable[[], Any],
    calls: int = 7,
    backend: str = "aot_eager",
) -> None:
    """Two identical models and losses, one stepped through ``torch.compile(train_step)``:
    equal losses and gradients at each call; after two warm-up calls any tracing fails.
    ``build_between`` builds a library module before each later call (it bumps a
    process-wide counter that a traced loss once read: one recompile per step)."""
    torch.manual_seed(0)
    eager_model = make_model()
    compiled_model = copy.deepcopy(eager_model)
    eager_loss, compiled_loss = make_loss(eager_model), make_loss(compiled_model)
    compiled_step = torch.compile(train_step, backend=backend)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    for seed in range(calls):
        if seed < 2:  # warm-up: dynamo compiles
            got = compiled_step(compiled_loss, compiled_model, x, seed)
        else:
            build_between()
            with torch.compiler.set_stance("fail_on_recompile"):
                got = compiled_step(compiled_loss, compiled_model, x, seed)
        want = train_step(eager_loss, eager_model, x, seed)
        torch.testing.assert_close(got, want)
        for (name, p), q in zip(compiled_model.named_parameters(), eager_model.parameters()):
            torch.testing.assert_close(p.grad, q.grad, msg=f"gradient of {name}")
