"""Adding a sampler: random-walk Metropolis in a few dozen lines (docs/contributing.md).

The sampler implements two public hooks, `init_state` and `step`, on a typed state; the
base class runs the loop (thinning, trajectories, diagnostics, schedulers, the NaN policy,
restarts, `compile=True`). The test suite imports this file and runs the class through the
sampler contract suite and against the closed-form moments of a Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from torchebm.core import (
    BaseSampler,
    GaussianModel,
    SamplerContext,
    SamplerState,
    ScheduledParameter,
)


@dataclass
class RandomWalkState(SamplerState):
    energy: torch.Tensor | None = None  # E(x) per chain, `(B,)`: never evaluated twice
    accepted: torch.Tensor | None = None  # `(B,)` bool, last proposal accepted
    # `(B,)` bool, last step ended in a Metropolis decision: `False` in the start state, so
    # a chain restarted by nan_policy="resample" gets `False` back and is left out of the
    # acceptance rate (it was neither accepted nor rejected)
    decided: torch.Tensor | None = None


class RandomWalkMetropolis(BaseSampler):
    r"""Random-walk Metropolis: propose $x' = x + \sigma\xi$, accept with $\min(1, e^{E(x) - E(x')})$.

    References:
        Metropolis, N. et al. (1953). Equation of state calculations by fast computing
        machines. J. Chem. Phys. 21(6).
    """

    diagnostic_keys = ("mean", "var", "energy", "acceptance_rate")

    step_size = ScheduledParameter(positive=True)
    r"""Proposal scale $\sigma$ (assign a float or a scheduler)."""

    def __init__(self, model, step_size=0.5, **kwargs):
        super().__init__(model, **kwargs)
        self.step_size = step_size

    def init_state(self, x: torch.Tensor, ctx: SamplerContext) -> RandomWalkState:
        energy = self.model_energy(x, ctx.model_kwargs)
        # a chain starting at E = +inf (outside the support) is held at NaN: it accepts no
        # proposal, stays where it started, and the driver reports it (as HMC does)
        energy = energy.masked_fill(energy == torch.inf, torch.nan)
        accepted = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        return RandomWalkState(x=x, energy=energy, accepted=accepted, decided=accepted.clone())

    def step(self, state: RandomWalkState, ctx: SamplerContext) -> RandomWalkState:
        x, sigma = state.x, self.get_scheduled_value("step_size")
        noise = torch.empty_like(x).normal_(generator=ctx.generator)
        proposal = x + sigma * noise
        energy = self.model_energy(proposal, ctx.model_kwargs)
        u = torch.empty_like(energy).uniform_(generator=ctx.generator)
        # log(1 - u), u in [0, 1): finite (log u of a draw u = 0 accepts any proposal);
        # NaN energies compare False: rejected
        accept = torch.log1p(-u) <= (state.energy - energy)
        rows = accept.reshape(-1, *([1] * (x.ndim - 1)))
        state.x = torch.where(rows, proposal, x)
        state.energy = torch.where(accept, energy, state.energy)
        state.accepted, state.decided = accept, torch.ones_like(accept)
        return state

    def compute_diagnostics(self, state: RandomWalkState, ctx: SamplerContext) -> dict:
        out = super().compute_diagnostics(state, ctx)
        # accepted over decided (NaN at a step where every chain was restarted)
        accepted, decided = state.accepted.to(state.x.dtype), state.decided.to(state.x.dtype)
        out["acceptance_rate"] = accepted.sum() / decided.sum()
        return out


if __name__ == "__main__":
    model = GaussianModel(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.5, 2.0]]))
    sampler = RandomWalkMetropolis(model, step_size=1.0)
    g = torch.Generator().manual_seed(0)
    samples, diag = sampler.sample(
        dim=2, n_samples=2000, n_steps=300, generator=g, return_diagnostics=True
    )
    print("mean", samples.mean(0).tolist(), "cov", torch.cov(samples.T).tolist())
    print("acceptance", float(diag["acceptance_rate"][-50:].nanmean()))
