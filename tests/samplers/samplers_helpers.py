"""Shared models, fields and sampler factories of the samplers tests."""

from __future__ import annotations

import math

from _support.registry import (  # noqa: F401 - re-exported to the samplers tests
    SAMPLERS,
    LinearField,
    MLPEnergy,
    analytic_model,
    identity_metric,
    neural_model,
)

#: name -> (factory(model, **kw) -> sampler, kind): the sampler entries of the one registry
FACTORIES = {name: (spec.factory, spec.kind) for name, spec in SAMPLERS.items()}

STOCHASTIC = {name for name, spec in SAMPLERS.items() if spec.stochastic}


def gaussian_tolerance(n: int, z: float = 5.0) -> tuple[float, float]:
    """(mean tol, relative variance tol) for ``n`` iid samples at ``z`` standard errors."""
    return z / math.sqrt(n), z * math.sqrt(2.0 / n)
