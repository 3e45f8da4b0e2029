"""Rows driven by the one registry of test specs (``tests/_support/registry.py``).

For every public sampler, loss and integrator: the registry covers it; the same seeded
``torch.Generator`` gives bit-identical output (and, where it is stochastic, another seed
gives another output) without touching the global RNG; a bad argument raises the named
error, naming the argument; and a NaN model is reported, never hidden (``nan_policy``).
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from _support.registry import INTEGRATORS, LOSSES, SAMPLERS, NaNEnergy, NaNField, analytic_model

import torchebm.integrators as I
import torchebm.losses as L
import torchebm.samplers as S
from torchebm.core import BaseIntegrator, BaseLoss, BaseModel, BaseSampler
from torchebm.core.errors import NonFiniteError

X0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))


def _public_concrete(module, base):
    out = set()
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) and issubclass(obj, base) and not inspect.isabstract(obj):
            if not name.startswith("Base"):
                out.add(obj)
    return out


@pytest.mark.parametrize(
    ("module", "base", "registry"),
    [(S, BaseSampler, SAMPLERS), (L, BaseLoss, LOSSES), (I, BaseIntegrator, INTEGRATORS)],
    ids=["samplers", "losses", "integrators"],
)
def test_registry_covers_every_public_class(module, base, registry):
    covered = {spec.cls for spec in registry.values()}
    missing = sorted(c.__name__ for c in _public_concrete(module, base) - covered)
    assert not missing, f"add a registry entry (tests/_support/registry.py) for {missing}"


# --------------------------------------------------------------------------- determinism


def _sample(name, seed):
    spec = SAMPLERS[name]
    sampler = spec.factory(analytic_model(spec.kind))
    g = None if seed is None else torch.Generator().manual_seed(seed)
    return sampler.sample(x=X0.clone(), n_steps=4, generator=g)


def _loss(name, seed):
    spec = LOSSES[name]
    torch.manual_seed(0)
    loss_fn = spec.factory(spec.model())
    out = loss_fn(X0.clone(), generator=torch.Generator().manual_seed(seed))
    return (out[0] if isinstance(out, tuple) else out).detach()


def _integrate(name, seed):
    spec = INTEGRATORS[name]
    return spec.run(spec.cls(), 3, torch.Generator().manual_seed(seed))["x"]


RUNS = {
    **{f"sampler:{n}": (_sample, n, s.stochastic) for n, s in SAMPLERS.items()},
    **{f"loss:{n}": (_loss, n, s.stochastic) for n, s in LOSSES.items()},
    **{f"integrator:{n}": (_integrate, n, s.stochastic) for n, s in INTEGRATORS.items()},
}


@pytest.mark.parametrize("key", sorted(RUNS))
def test_same_seed_same_output_and_global_rng_untouched(key):
    run, name, stochastic = RUNS[key]
    state = torch.get_rng_state()
    a, b = run(name, 1), run(name, 1)
    assert torch.equal(a, b)
    if stochastic:
        assert not torch.equal(a, run(name, 2)), "another seed must give another output"
    if key.startswith("sampler:"):
        assert torch.equal(torch.get_rng_state(), state)


# --------------------------------------------------------------------------- validation


def _bad_sampler(name):
    spec = SAMPLERS[name]
    arg, value, _ = spec.bad
    return spec.factory(analytic_model(spec.kind), **{arg: value})


def _bad_loss(name):
    spec = LOSSES[name]
    arg, value, _ = spec.bad
    return spec.factory(spec.model(), **{arg: value})


def _bad_integrator(name):
    spec = INTEGRATORS[name]
    arg, value, _ = spec.bad
    assert arg == "n_steps"
    return spec.run(spec.cls(), value, None)


BAD = {
    **{f"sampler:{n}": (_bad_sampler, n, s.bad) for n, s in SAMPLERS.items()},
    **{f"loss:{n}": (_bad_loss, n, s.bad) for n, s in LOSSES.items()},
    **{f"integrator:{n}": (_bad_integrator, n, s.bad) for n, s in INTEGRATORS.items()},
}


@pytest.mark.parametrize("key", sorted(BAD))
def test_bad_argument_raises_the_named_error(key):
    build, name, (arg, value, error) = BAD[key]
    with pytest.raises(error, match=arg):
        build(name)


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_integrator_leaves_the_callers_state_untouched(name):
    """``integrate`` never writes into the tensors of the state it is given (the base
    class's promise; an integrator outside the Runge-Kutta and symplectic families that
    updated ``x`` in place passed every other row)."""
    spec = INTEGRATORS[name]
    integrator, given = spec.cls(), []
    integrate = integrator.integrate

    def recording(state, *args, **kwargs):
        copies = {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
        given.append((state, copies))
        return integrate(state, *args, **kwargs)

    integrator.integrate = recording
    spec.run(integrator, 3, torch.Generator().manual_seed(0))
    assert given
    for state, copies in given:
        for key, before in copies.items():
            assert torch.equal(state[key], before), f"{name} wrote into the caller's {key!r}"


# --------------------------------------------------------------------------- nan_policy


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_nan_policy_raise_on_a_nan_model(name):
    spec = SAMPLERS[name]
    sampler = spec.factory(NaNEnergy() if spec.kind == "energy" else NaNField())
    run = lambda: sampler.sample(x=X0.clone(), n_steps=2, nan_policy="raise", nan_check_every=1)  # noqa: E731
    # every chain is reported: Metropolis samplers through the non-finite energy of their
    # current state (every NaN proposal is rejected, so x stays finite), the adaptive flow
    # integrator through the non-finite drift it cannot step past
    with pytest.raises(NonFiniteError) as info:
        run()
    assert sorted(info.value.indices) == list(range(X0.shape[0]))


class SinkAndNaN(BaseModel):
    """``|x|^2 / 2``, but ``-inf`` for ``x_0 > 1.5`` (a Metropolis sampler accepts a move
    there: its energy turns non-finite) and NaN, energy and gradient, for ``x_1 > 1.5``
    (an unadjusted step turns x NaN): both make a chain divergent."""

    def forward(self, x):
        e = 0.5 * (x * x).sum(-1) + torch.where(x[:, 0] > 1.5, -math.inf, 0.0)
        return e + 0.0 * torch.sqrt(1.5 - x[:, 1])  # 0 * NaN beyond 1.5 (no NaN elsewhere)


@pytest.mark.parametrize(
    "name", sorted(n for n, s in SAMPLERS.items() if s.kind == "energy" and s.stochastic)
)
def test_sampler_chains_restarted_under_resample_move_again(name):
    """A restarted chain is a fresh chain: a sampler whose state keeps a stale cache (an
    energy filled lazily, a field the base cannot reset) froze every restarted chain at its
    start (-inf energy: every later proposal rejected), silently. Chains start at the mode,
    where a working sampler moves away at once."""
    sampler = SAMPLERS[name].factory(SinkAndNaN())
    x0 = torch.zeros(64, 2)
    with pytest.warns(RuntimeWarning, match="restarted"):
        traj = sampler.sample(
            x=x0, n_steps=80, nan_policy="resample", nan_check_every=1,
            return_trajectory=True, generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
    assert bool(torch.isfinite(traj).all())
    frozen = (traj[:, -20:] == x0[:, None]).all(-1).all(-1)
    assert int(frozen.sum()) == 0, f"{int(frozen.sum())} of 64 chains sat at their start"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_raises_on_nan_by_default_and_never_masks_it(name):
    spec = LOSSES[name]
    with pytest.raises(NonFiniteError):
        spec.factory(spec.nan_model())(X0.clone(), generator=torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning):
        out = spec.factory(spec.nan_model(), nan_policy="warn")(
            X0.clone(), generator=torch.Generator().manual_seed(0)
        )
    assert torch.isnan(out[0] if isinstance(out, tuple) else out)  # upstream CD returned 0.1
