"""What a user's type checker sees on the documented calls (checked by mypy in
``nox -s typecheck``, not run by pytest): ``assert_type`` fails the check when a public
function's type is lost (``Any``) or a documented call does not type-check."""

from __future__ import annotations

import torch
from typing_extensions import assert_type

from torchebm.integrators import get_integrator
from torchebm.metrics import energy_distance, mmd2, sliced_wasserstein


def metrics_keep_their_signatures(x: torch.Tensor, y: torch.Tensor) -> None:
    # a decorator typed Callable -> Callable made every metric (*Any, **Any) -> Any
    assert_type(energy_distance(x, y), torch.Tensor)
    assert_type(mmd2(x, y), torch.Tensor)
    assert_type(sliced_wasserstein(x, y), torch.Tensor)


def integrate_on_a_grid(x1: torch.Tensor) -> None:
    # flows README: the abstract integrate() required step_size and n_steps positionally
    dopri5 = get_integrator("dopri5")
    out = dopri5.integrate({"x": x1}, t=torch.linspace(1.0, 0.0, 2), drift=lambda x, t: -x)
    assert_type(out, dict)
