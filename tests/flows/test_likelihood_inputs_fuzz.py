"""probability_flow_log_likelihood checks n_steps, atol and rtol when they are given, also
where its integrator ignores them (dopri5's n_steps, a fixed-step integrator's tolerances):
n_steps=-3 or atol=nan were taken in silence."""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.core.errors import ConfigurationError
from torchebm.flows import probability_flow_log_likelihood


def _velocity(x, t):
    return -x


@pytest.mark.parametrize(
    ("integrator", "bad"),
    [
        ("dopri5", {"n_steps": -3}),
        ("dopri5", {"n_steps": 1.5}),
        ("euler", {"n_steps": 4, "atol": math.nan}),
        ("euler", {"n_steps": 4, "rtol": -1.0}),
    ],
)
def test_ignored_solver_options_are_still_checked(integrator, bad):
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    name = next(k for k in bad if k != "n_steps" or len(bad) == 1)
    with pytest.raises((TypeError, ConfigurationError), match=name):
        probability_flow_log_likelihood(_velocity, x, integrator=integrator, **bad)
