r"""An adaptive solve that runs out of ``max_steps`` because ``rtol`` lies below the
resolution of the state's dtype says so. Before, float32 ``rtol=atol=1e-14`` on
$x' = -x$ over $[0, 1]$ (not stiff) ended in "maximum number of steps ... the problem is
stiff" only. Ordinary tolerances (float32 at 1e-6 or 1e-7, torchdiffeq's defaults) are
not named, and a solve that succeeds never warns."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from torchebm.integrators import Bosh3Integrator, Dopri5Integrator

GRID = torch.tensor([0.0, 1.0])


def _solve(integ, dtype=torch.float32):
    x0 = {"x": torch.ones(2, 1, dtype=dtype)}
    return integ.integrate(x0, t=GRID.to(dtype), drift=lambda x, t: -x)["x"]


@pytest.mark.parametrize("make", [Dopri5Integrator, Bosh3Integrator])
def test_max_steps_names_an_rtol_below_the_float32_resolution(make):
    # 1e-14 needs thousands of steps even in exact arithmetic: 300 fail fast, as 10,000 did
    with pytest.raises(RuntimeError, match="maximum number of steps") as info:
        _solve(make(atol=1e-14, rtol=1e-14, max_steps=300))
    msg = str(info.value)
    assert "the problem is stiff" in msg  # the other cause is still named
    assert "(rtol=1e-14, atol=1e-14, |x| up to" in msg
    assert "is below the resolution of the state's dtype torch.float32" in msg
    assert f"eps {torch.finfo(torch.float32).eps:.3g}" in msg
    assert "loosen rtol" in msg and "or use float64" in msg


def test_float64_is_not_told_to_use_float64():
    with pytest.raises(RuntimeError, match="below the resolution") as info:
        _solve(Dopri5Integrator(atol=1e-18, rtol=1e-18, max_steps=50), torch.float64)
    assert "torch.float64" in str(info.value) and "use float64" not in str(info.value)


@pytest.mark.parametrize("rtol", [1e-6, 1e-7])
def test_ordinary_float32_tolerances_are_not_named_nor_warned(rtol):
    with pytest.raises(RuntimeError, match="maximum number of steps") as info:
        _solve(Dopri5Integrator(atol=1e-9, rtol=rtol, max_steps=2))
    assert "resolution" not in str(info.value) and "float64" not in str(info.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = _solve(Dopri5Integrator(atol=1e-9, rtol=rtol))
    assert abs(float(y[0, 0]) - math.exp(-1)) < 1e-5


def test_rtol_zero_with_a_workable_atol_is_not_named():
    # rtol=0, atol=1e-6 solves x' = -x (x(1) within 1e-7): a solve that runs out of steps
    # there (here a tiny budget) must not blame rtol's resolution
    y = _solve(Dopri5Integrator(atol=1e-6, rtol=0.0))
    assert abs(float(y[0, 0]) - math.exp(-1)) < 1e-5
    with pytest.raises(RuntimeError, match="maximum number of steps") as info:
        _solve(Dopri5Integrator(atol=1e-6, rtol=0.0, max_steps=2))
    assert "resolution" not in str(info.value)
