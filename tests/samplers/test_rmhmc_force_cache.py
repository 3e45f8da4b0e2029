"""RiemannianManifoldHMC's force reuses, at one position, what does not depend on the
momentum: the generalised leapfrog's momentum solve asks for the force ``solver_max_iter``
times at the same x, and each call re-ran the model, the metric, its Cholesky factorisation
and a full backward pass (91 model calls per step of 5 leapfrog steps, 13 needed). The cache
is keyed on the position tensor (the integrator makes a new one per update), so another
position never gets its force."""

from __future__ import annotations

import pytest
import torch

from torchebm.core import BaseModel
from torchebm.integrators import GeneralisedLeapfrogIntegrator
from torchebm.samplers import RiemannianManifoldHMC
from torchebm.samplers._hmc import HMCState

F64 = torch.float64
# a few proposals fail their implicit solves at this step size (their counts are compared)
pytestmark = pytest.mark.filterwarnings("ignore:.*implicit solves:RuntimeWarning")


class _Counting(BaseModel):
    """A 2-D Student-t-like energy that reads x once; counts calls with a graph in x."""

    graph_calls = 0

    def forward(self, x):
        type(self).graph_calls += x.requires_grad
        return 1.5 * torch.log1p(x.square().sum(-1) / 3)


class _TwiceRead(BaseModel):
    """Reads x through two nodes (the order of their gradients' sum may differ by rounding)."""

    def forward(self, x, y=None):
        return 0.5 * (x - y).square().sum(-1) + 0.1 * x.pow(4).sum(-1)


def _metric(x):
    a = torch.tanh(x)
    return torch.eye(x.shape[1], dtype=x.dtype) + a[:, :, None] * a[:, None, :]


def _start(n=16):
    return 1.5 * torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(3))


def _sampler(cls=RiemannianManifoldHMC, model=None, iters=8, n_leapfrog_steps=3):
    gl = GeneralisedLeapfrogIntegrator(solver_max_iter=iters, dtype=F64)
    model = _Counting() if model is None else model
    return cls(model, _metric, 0.3, n_leapfrog_steps, dtype=F64, integrator=gl)


class _Uncached(RiemannianManifoldHMC):
    """Overrides `_force` (with the library's own): called at every evaluation, uncached."""

    calls = 0

    def _force(self, x, p, conditioning):
        type(self).calls += 1
        return super()._force(x, p, conditioning)


def test_one_model_call_with_a_graph_per_position_of_a_trajectory():
    # two trajectories (forward and reverse) of L steps: L + 1 positions each; the start
    # point's gradient check is one more. Before: L (solver_max_iter + 1) per trajectory
    _Counting.graph_calls = 0
    n_steps, L = 4, 3
    _sampler(n_leapfrog_steps=L).sample(
        x=_start(), n_steps=n_steps, generator=torch.Generator().manual_seed(1)
    )
    assert _Counting.graph_calls == 1 + n_steps * 2 * (L + 1)


@pytest.mark.parametrize("model", ["once", "twice"])
def test_the_chains_are_those_of_the_uncached_force(model):
    # bit for bit when the model reads x through one node; else to rounding
    y = torch.tensor([[0.3, -0.2]], dtype=F64).expand(16, 2).clone()
    kwargs = {"y": y} if model == "twice" else None
    make = _Counting if model == "once" else _TwiceRead
    runs = []
    for cls in (RiemannianManifoldHMC, _Uncached):
        s = _sampler(cls, make())
        out = s.sample(
            x=_start(), n_steps=6, generator=torch.Generator().manual_seed(1), model_kwargs=kwargs
        )
        runs.append((out, s.unconverged_proposals.clone()))
    assert _Uncached.calls > 0
    (cached, n_cached), (uncached, n_uncached) = runs
    assert torch.equal(n_cached, n_uncached)
    if model == "once":
        assert torch.equal(cached, uncached)
    else:
        torch.testing.assert_close(cached, uncached, rtol=0.0, atol=1e-12)


def test_the_cache_follows_the_position_tensor():
    s = _sampler()
    state = HMCState(x=_start())
    x = _start()
    g = torch.Generator().manual_seed(5)
    for _ in range(3):  # several momenta at one x: one entry, each force exact
        p = torch.randn(x.shape, dtype=F64, generator=g)
        torch.testing.assert_close(s._cached_force(x, p, state, {}), s._force(x, p, {}))
    entry = state.force_cache
    other = x + 1.0  # another tensor: never the entry of x
    torch.testing.assert_close(s._cached_force(other, p, state, {}), s._force(other, p, {}))
    assert state.force_cache is not entry and state.force_cache[0] is other


def test_a_model_energy_override_drives_the_cached_force():
    class Flat(RiemannianManifoldHMC):
        calls = 0

        def model_energy(self, x, model_kwargs=None):
            type(self).calls += x.requires_grad
            return 0.0 * x.sum(-1)  # no potential: only the metric's terms move the chains

    s, x = _sampler(Flat), _start()
    p = torch.randn(x.shape, dtype=F64, generator=torch.Generator().manual_seed(2))
    state = HMCState(x=x)
    expected = s._force(x, p, {})
    before = Flat.calls
    torch.testing.assert_close(s._cached_force(x, p, state, {}), expected)
    assert Flat.calls == before + 1
    # and not the model's gradient: with the model's energy the force differs
    base = _sampler()
    assert not torch.allclose(base._cached_force(x, p, HMCState(x=x), {}), expected)


def test_a_force_set_on_the_instance_is_called_at_every_evaluation():
    s = _sampler(iters=4, n_leapfrog_steps=2)
    calls = []

    def force(x, p, conditioning):
        calls.append(1)
        return RiemannianManifoldHMC._force(s, x, p, conditioning)

    s._force = force
    s.sample(x=_start(4), n_steps=1, generator=torch.Generator().manual_seed(1))
    assert len(calls) == 2 * 2 * (4 + 1)  # two trajectories, per step solver_max_iter + 1


def test_a_model_gradient_override_drives_the_cached_force():
    """An override of `model_gradient` is the potential's gradient in the force: zero
    gradients give the force of a flat energy (the metric's terms only)."""

    class NoPull(RiemannianManifoldHMC):
        def model_gradient(self, x, model_kwargs=None):
            return torch.zeros_like(x)

    class Flat(RiemannianManifoldHMC):
        def model_energy(self, x, model_kwargs=None):
            return 0.0 * x.sum(-1)

    x = _start()
    p = torch.randn(x.shape, dtype=F64, generator=torch.Generator().manual_seed(2))
    got = _sampler(NoPull)._cached_force(x, p, HMCState(x=x), {})
    torch.testing.assert_close(got, _sampler(Flat)._force(x, p, {}), rtol=1e-12, atol=1e-12)
