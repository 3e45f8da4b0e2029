"""What a user's type checker sees on the documented calls (checked by mypy in
``nox -s typecheck``, not run by pytest): ``assert_type`` fails the check when a public
function's type is lost (``Any``) or a documented call does not type-check."""

from __future__ import annotations

from typing import Any

import torch
from typing_extensions import assert_type

from torchebm.core import BaseIntegrator
from torchebm.integrators import Dopri5Integrator
from torchebm.metrics import energy_distance, mmd2, sliced_wasserstein


def metrics_keep_their_signatures(x: torch.Tensor, y: torch.Tensor) -> None:
    # a decorator typed Callable -> Callable made every metric (*Any, **Any) -> Any
    assert_type(energy_distance(x, y), torch.Tensor)
    assert_type(mmd2(x, y), torch.Tensor)
    assert_type(sliced_wasserstein(x, y), torch.Tensor)


def integrate_on_a_grid(x1: torch.Tensor) -> None:
    # the flows README's call (get_integrator returns the base class, whose abstract
    # integrate() takes step_size and n_steps positionally: the README builds the class)
    dopri5 = Dopri5Integrator()
    out = dopri5.integrate({"x": x1}, t=torch.linspace(1.0, 0.0, 2), drift=lambda x, t: -x)
    assert_type(out, dict)


class SplittingIntegrator(BaseIntegrator):
    """A user's integrator as docs/contributing.md describes it (not a tableau): its own
    ``integrate(state, step_size, n_steps, ...)`` must satisfy the base's signature."""

    def step(self, state: dict, step_size: float, drift: Any = None) -> dict:
        return {"x": state["x"] + step_size * drift(state["x"], None)}

    def integrate(self, state: dict, step_size: float, n_steps: int, drift: Any = None) -> dict:
        for _ in range(n_steps):
            state = self.step(state, step_size, drift=drift)
        return state
