r"""Per-chain counts of the steps whose implicit solve did not converge, for the samplers
that step a Runge-Kutta integrator with an implicit stage (`LangevinDynamics` with
``integrator="backward_euler_maruyama"``, `FlowSampler` on a fixed grid).

A truncated Picard iteration is not the implicit step: backward Euler-Maruyama on a
Gaussian of precision 10 with ``step_size=0.09`` and 8 evaluations samples a variance of
0.21 where the scheme gives 0.069. The integrator reports each call's per-chain
convergence (`solver_converged`, no host sync); the sampler adds it up on the device and
`warn_unconverged` reports the call's total once, in `finish`.
"""

from __future__ import annotations

from typing import Any

import torch

from torchebm.core import BaseRungeKuttaIntegrator
from torchebm.core._module import warn_user
from torchebm.integrators._state import has_implicit_stage

__all__ = ["add_unconverged", "unconverged_counter", "warn_unconverged"]


def unconverged_counter(integrator: Any, x: torch.Tensor) -> torch.Tensor | None:
    """`(B,)` int64 zeros on ``x``'s device when ``integrator`` is a Runge-Kutta integrator
    with an implicit (diagonal) stage, else ``None`` (nothing to count: an explicit step
    then costs no work at all for this)."""
    if not isinstance(integrator, BaseRungeKuttaIntegrator):
        return None
    if not has_implicit_stage(integrator.tableau_a):
        return None
    return torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)


def add_unconverged(counts: torch.Tensor, integrator: BaseRungeKuttaIntegrator) -> None:
    """Add 1 to ``counts`` `(B,)` for each chain whose implicit solve in the integrator's
    last call did not converge (on the device: no host sync)."""
    converged = integrator.solver_converged
    if converged is not None:
        counts.add_(~converged)


def warn_unconverged(sampler: Any, counts: torch.Tensor | None) -> None:
    """One `RuntimeWarning` naming ``sampler``, its integrator, the steps and chains whose
    implicit solves did not converge during the ``sample()`` call, ``solver_max_iter`` and
    the remedy; nothing when ``counts`` is ``None`` or all zero (one host sync).

    Args:
        sampler: The sampler (its ``integrator`` is the one that solved).
        counts: `(B,)` int64, per chain, the steps of the call with an unconverged solve.
    """
    if counts is None or counts.numel() == 0:
        return
    total, chains, most = torch.stack([counts.sum(), counts.count_nonzero(), counts.max()]).tolist()
    if total == 0:
        return
    integrator = sampler.integrator
    # a sampler with a step size lowers it; one on a time grid (FlowSampler) takes more steps
    smaller = "lower step_size" if hasattr(sampler, "step_size") else "raise n_steps"
    warn_user(
        f"{type(sampler).__name__}: the implicit solve of {type(integrator).__name__} did "
        f"not converge at {total} chain-steps (up to {most} of the call's steps in one "
        f"chain) in {chains} of {counts.shape[0]} chains, so those steps are truncated "
        "fixed-point iterates, not the implicit scheme (biased samples). Raise "
        f"solver_max_iter of the integrator (now {integrator.solver_max_iter}) or {smaller}: "
        "Picard iteration converges only when step * Lip(drift) < 1, and slowly near 1",
        RuntimeWarning,
    )
