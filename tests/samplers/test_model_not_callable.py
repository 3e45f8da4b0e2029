"""A sampler rejects a model that is not callable when it is constructed.

Before the fix `LangevinDynamics("abc")` constructed, and the first `sample()` failed inside
the loop with `TypeError: 'str' object is not callable`.
"""

from __future__ import annotations

import pytest

from torchebm.samplers import (
    FlowSampler,
    GradientDescentSampler,
    HamiltonianMonteCarlo,
    LangevinDynamics,
    NesterovSampler,
)

SAMPLERS = [LangevinDynamics, HamiltonianMonteCarlo, GradientDescentSampler, NesterovSampler]


@pytest.mark.parametrize("cls", [*SAMPLERS, FlowSampler])
@pytest.mark.parametrize("model", ["abc", 3])
def test_a_model_that_is_not_callable_is_named_at_construction(cls, model):
    with pytest.raises(
        TypeError, match=rf"{cls.__name__} requires a model \(a callable\), got {model!r}"
    ):
        cls(model)


def test_a_callable_model_still_constructs():
    for cls in SAMPLERS:
        assert cls(lambda x: 0.5 * (x**2).sum(-1)).model is not None
