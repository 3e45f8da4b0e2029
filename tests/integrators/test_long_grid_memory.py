"""A fixed-grid `integrate` call holds memory independent of its number of steps.

Before the fix the loop built the per-step time rows of the whole grid before its first
step (one tensor view per step and per distinct stage time: ~0.7 kB per step for Euler,
~2.4 kB for RK4), and an SDE with a callable diffusion kept two 0-d tensors per step for
its after-the-loop check (~1.7 kB per step): 320,000 RK4 steps of a (4, 2) state peaked
at +773 MiB. The tests count the tensors alive at the last step: the same for 2 and 8
chunks of the loop's time rows (before: one more per extra step and stage time).
"""

from __future__ import annotations

import gc

import pytest
import torch

from torchebm.integrators import EulerMaruyamaIntegrator, HeunIntegrator, RK4Integrator
from torchebm.integrators._base_runge_kutta import _GRID_CHUNK


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def _tensors_at_last_step(integrator, n_steps: int, *, grid: bool, **kwargs) -> int:
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    calls, seen = [0], []
    per_step = len(integrator.tableau_c)  # drift evaluations per step

    def drift(x, t):
        calls[0] += 1
        if calls[0] == per_step * n_steps:  # the last stage of the last step
            seen.append(_live_tensors())
        return -x

    if grid:
        t = torch.linspace(0.0, 1.0, n_steps + 1, dtype=torch.float64)
        integrator.integrate({"x": x}, t=t, drift=drift, **kwargs)
    else:
        integrator.integrate({"x": x}, 1.0 / n_steps, n_steps, drift=drift, **kwargs)
    assert len(seen) == 1
    return seen[0]


def _diffusion(x, t):
    return torch.full((x.shape[0],), 0.01, dtype=x.dtype)


CASES = [  # (name, class, integrate keywords, autograd on)
    ("rk4", RK4Integrator, {}, False),
    ("rk4_grad", RK4Integrator, {}, True),
    ("heun", HeunIntegrator, {}, False),
    ("euler_maruyama_callable", EulerMaruyamaIntegrator, {"diffusion": _diffusion}, False),
    ("euler_maruyama_callable_grad", EulerMaruyamaIntegrator, {"diffusion": _diffusion}, True),
    ("euler_maruyama_constant", EulerMaruyamaIntegrator, {"noise_scale": 0.1}, False),
]


@pytest.mark.parametrize("grid", [False, True], ids=["step_size", "time_grid"])
@pytest.mark.parametrize("name,cls,kwargs,grad", CASES, ids=[c[0] for c in CASES])
def test_live_tensors_do_not_grow_with_the_number_of_steps(name, cls, kwargs, grad, grid):
    integrator = cls(dtype=torch.float64)
    if "noise_scale" in kwargs or "diffusion" in kwargs:
        kwargs = {**kwargs, "generator": torch.Generator().manual_seed(1)}
    with torch.set_grad_enabled(grad):
        short = _tensors_at_last_step(integrator, 2 * _GRID_CHUNK, grid=grid, **kwargs)
        long = _tensors_at_last_step(integrator, 8 * _GRID_CHUNK, grid=grid, **kwargs)
    # O(1) bookkeeping; the unfixed loop held 6 * _GRID_CHUNK (6,144) more, at least
    assert long - short < 100, (short, long)
