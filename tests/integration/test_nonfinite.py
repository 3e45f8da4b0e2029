"""Non-finite values: samplers report which chains went NaN/inf and at which step (policy
raise / warn / resample). That every loss raises on NaN by default and never masks a
non-finite value as a constant is a row of the registry (``test_registry_rows.py``)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import torchebm.samplers as S
from torchebm.core import BaseModel
from torchebm.core.errors import NonFiniteError


class Cliff(BaseModel):
    """``E = |x|^2 / 2``, but NaN wherever ``x_0 > 1.5`` (so those chains break at once)."""

    def forward(self, x):
        return 0.5 * (x**2).sum(-1) + torch.sqrt(1.5 - x[:, 0])  # NaN (and NaN grad) for x_0 > 1.5


X0 = torch.tensor([[0.1, 0.2], [2.0, 0.0], [-0.3, 0.4], [3.0, 1.0], [0.5, -0.5]])
BAD = [1, 3]

SAMPLERS = {
    "LangevinDynamics": lambda: S.LangevinDynamics(Cliff(), step_size=0.01),
    "GradientDescentSampler": lambda: S.GradientDescentSampler(Cliff(), step_size=0.1),
    "NesterovSampler": lambda: S.NesterovSampler(Cliff(), step_size=0.1),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_raise_names_the_chains_and_the_first_step(name):
    with pytest.raises(NonFiniteError) as info:
        SAMPLERS[name]().sample(
            x=X0,
            n_steps=4,
            nan_check_every=1,
            nan_policy="raise",
            generator=torch.Generator().manual_seed(0),
        )
    err = info.value
    assert sorted(err.indices) == BAD and err.step == 1
    assert "1 (step 1)" in str(err) and "3 (step 1)" in str(err)
    with pytest.raises(NonFiniteError) as info:  # checked every 10 steps: at step 4 (the last)
        SAMPLERS[name]().sample(
            x=X0, n_steps=4, nan_policy="raise", generator=torch.Generator().manual_seed(0)
        )
    assert info.value.windows == [(1, 4), (1, 4)] and "1 (steps 1-4)" in str(info.value)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_default_warns_and_records_the_divergent_chains(name):
    sampler = SAMPLERS[name]()
    with pytest.warns(RuntimeWarning, match="2 of 5 chains diverged"):
        out = sampler.sample(x=X0, n_steps=4, generator=torch.Generator().manual_seed(0))
    assert sampler.divergent_chains.nonzero().flatten().tolist() == BAD
    finite = [i for i in range(5) if i not in BAD]
    assert torch.isfinite(out[finite]).all() and not torch.isfinite(out[BAD]).all()


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_warn_returns_the_bad_chains_unmasked(name):
    with pytest.warns(RuntimeWarning, match="NaN"):
        out = SAMPLERS[name]().sample(
            x=X0, n_steps=4, nan_policy="warn", generator=torch.Generator().manual_seed(0)
        )
    bad_rows = (~torch.isfinite(out)).any(-1).nonzero().flatten().tolist()
    assert bad_rows == BAD  # nothing replaced by a constant, the good chains untouched


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_resample_restarts_only_the_bad_chains(name):
    s = SAMPLERS[name]()
    with pytest.warns(RuntimeWarning, match="restarted"):
        out = s.sample(
            x=X0, n_steps=4, nan_policy="resample", generator=torch.Generator().manual_seed(0)
        )
    assert torch.isfinite(out).all()
    ref = SAMPLERS[name]().sample(
        x=X0[[0, 2, 4]], n_steps=4, generator=torch.Generator().manual_seed(0)
    )
    if name != "LangevinDynamics":  # deterministic samplers: good chains are unaffected
        assert torch.allclose(out[[0, 2, 4]], ref)


def test_flow_sampler_reports_nonfinite_chains():
    class Field(nn.Module):
        def forward(self, x, t):
            return torch.where(x[:, :1] > 1.5, x * math.inf, -x)

    with pytest.raises(NonFiniteError) as info:
        S.FlowSampler(Field(), integrator="euler").sample(x=X0, n_steps=3, nan_policy="raise")
    assert sorted(info.value.indices) == BAD
