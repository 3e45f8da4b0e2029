"""The shared loop of ``BaseSampler``: subclassing, schedulers, NaN policy, host syncs, compile."""

from __future__ import annotations

import time
import tracemalloc
import warnings
from typing import Optional, Union

import pytest
import torch
from _support.host_reads import count_host_reads
from samplers_helpers import FACTORIES, analytic_model

from torchebm.core import (
    BaseModel,
    BaseSampler,
    ConstantScheduler,
    DoubleWellModel,
    GaussianModel,
    HarmonicModel,
    LinearScheduler,
)
from torchebm.core.errors import NonFiniteError
from torchebm.samplers import GradientDescentSampler, LangevinDynamics


class LinearEnergy(BaseModel):
    """E(x) = sum(x): constant gradient 1, so x_n = x_0 - sum of the step sizes used."""

    def forward(self, x):
        return x.sum(-1)


def test_base_sampler_is_abstract_but_a_step_subclass_is_not():
    with pytest.raises(TypeError, match="step"):
        BaseSampler(HarmonicModel())

    class Flow(BaseSampler):
        def step(self, state, ctx):
            state["x"] = state["x"] - 0.5 * self._model_gradient(state["x"], ctx.model_kwargs)
            return state

    out = Flow(HarmonicModel()).sample(x=torch.ones(2, 3), n_steps=3)
    torch.testing.assert_close(out, torch.full((2, 3), 0.125))


def test_a_089_sampler_that_starts_with_init_state_works():
    # torchebm 0.8.9's own samplers began sample() with self._init_state(x, dim, n_samples,
    # generator); a user sampler written the same way raised AttributeError
    class Descent(BaseSampler):
        def sample(self, x=None, dim=None, n_steps=10, n_samples=1, *, generator=None):
            x = self._init_state(x, dim, n_samples, generator)
            for _ in range(n_steps):
                x = x - 0.5 * self._model_gradient(x, {})
            return x

    sampler = Descent(HarmonicModel())
    torch.testing.assert_close(
        sampler.sample(x=torch.ones(2, 3), n_steps=3), torch.full((2, 3), 0.125)
    )
    g = torch.Generator().manual_seed(0)
    drawn = sampler.sample(dim=2, n_samples=5, n_steps=0, generator=g)
    assert torch.equal(drawn, torch.randn(5, 2, generator=torch.Generator().manual_seed(0)))
    assert sampler._init_state(None, 3, 4).shape == (4, 3)  # generator optional, as in 0.8.9


def test_seed_custom_sampler_that_overrides_sample_still_works():
    # verbatim pattern of the seed documentation ("Example: Simplified Langevin Dynamics")
    class SimpleLangevin(BaseSampler):
        def __init__(
            self,
            model: BaseModel,
            step_size: float = 0.01,
            noise_scale: float = 1.0,
            dtype: torch.dtype = torch.float32,
            device: Optional[Union[str, torch.device]] = None,
        ):
            super().__init__(model=model, dtype=dtype, device=device)
            self.register_scheduler("step_size", ConstantScheduler(step_size))
            self.register_scheduler("noise_scale", ConstantScheduler(noise_scale))

        def langevin_step(self, x):
            step_size = self.get_scheduled_value("step_size")
            noise_scale = self.get_scheduled_value("noise_scale")
            gradient = self.model.gradient(x)
            noise = torch.randn_like(x)
            return (
                x
                - step_size * gradient
                + torch.sqrt(torch.tensor(2.0 * step_size)) * noise_scale * noise
            )

        @torch.no_grad()
        def sample(self, x=None, dim=10, n_steps=100, n_samples=1, thin=1,
                   return_trajectory=False, return_diagnostics=False):  # fmt: skip
            self.reset_schedulers()
            if x is None:
                x = torch.randn(n_samples, dim, dtype=self.dtype, device=self.device)
            for _ in range(n_steps):
                self.step_schedulers()
                x = self.langevin_step(x)
            return x

    sampler = SimpleLangevin(HarmonicModel(), step_size=0.1)
    assert sampler.sample(n_samples=7, n_steps=5).shape == (7, 10)


def test_scheduler_values_are_used_in_order_and_reset_per_call():
    # values before steps 1, 2, 3 are 1, 2, 3 (the start value is used by the first step)
    sampler = GradientDescentSampler(LinearEnergy(), step_size=LinearScheduler(1.0, 3.0, 2))
    x0 = torch.zeros(2, 1)
    traj = sampler.sample(x=x0, n_steps=3, return_trajectory=True)
    torch.testing.assert_close(traj[0, :, 0], torch.tensor([-1.0, -3.0, -6.0]))
    # reset_schedulers=True (default): the schedule restarts
    torch.testing.assert_close(sampler.sample(x=x0, n_steps=3), torch.full((2, 1), -6.0))
    # reset_schedulers=False: the schedule continues at its end value 3
    out = sampler.sample(x=x0, n_steps=3, reset_schedulers=False)
    torch.testing.assert_close(out, torch.full((2, 1), -9.0))


def _diverging_setup():
    # gradient descent on a double well with a huge step: chains starting at |x| = 3
    # overflow to inf and then NaN, chains starting in the well at 0.9 converge
    x0 = torch.tensor([[0.9], [3.0], [-0.9], [-3.0]])
    model = DoubleWellModel(barrier_height=1.0)
    eta = 0.2
    x, first = x0.clone(), torch.full((4,), -1)
    for k in range(1, 31):  # the expected first non-finite step of each chain
        x = x - eta * model.gradient(x)
        bad = ~torch.isfinite(x).all(1)
        first[bad & (first < 0)] = k
    return model, x0, eta, first


def test_nan_policy_raise_reports_chains_and_first_step():
    model, x0, eta, first = _diverging_setup()
    assert first.tolist()[0] == -1 and first.tolist()[1] > 0  # the fixture diverges as intended
    sampler = GradientDescentSampler(model, step_size=eta, nan_policy="raise")
    with pytest.raises(NonFiniteError) as info:
        sampler.sample(x=x0, n_steps=30, nan_check_every=1)
    err = info.value
    assert err.indices == [1, 3]
    assert err.steps == [int(first[1]), int(first[3])]
    assert err.step == int(first[first > 0].min())
    assert err.windows == [(int(first[1]),) * 2, (int(first[3]),) * 2]
    assert "1 (step" in str(err) and "nan_policy" in str(err)
    assert "nan_check_every=1" not in str(err)  # exact: no hint


@pytest.mark.parametrize("every", [4, 7, 10, 30])
def test_sparse_nan_checks_bracket_the_first_step(every):
    model, x0, eta, first = _diverging_setup()
    sampler = GradientDescentSampler(model, step_size=eta, nan_policy="raise")
    sampler.nan_check_every = every
    with pytest.raises(NonFiniteError) as info:
        sampler.sample(x=x0, n_steps=30)
    err = info.value
    assert err.indices == [1, 3]
    checks = [*range(every, 30, every), 30]  # every k-th step and the last
    for (lo, hi), true in zip(err.windows, first[[1, 3]].tolist()):
        assert lo <= true <= hi and hi in checks  # the check that saw it
        assert lo - 1 in [0, *checks]  # ... and the check before it
    assert "nan_check_every=1" in str(err)


def test_a_recorded_trajectory_gives_the_exact_first_step():
    model, x0, eta, first = _diverging_setup()
    sampler = GradientDescentSampler(model, step_size=eta, nan_policy="raise")
    with pytest.raises(NonFiniteError) as info:
        sampler.sample(x=x0, n_steps=30, return_trajectory=True, nan_check_every=30)
    assert info.value.steps == [int(first[1]), int(first[3])]
    with pytest.raises(NonFiniteError) as info:  # thinned: narrowed to the thinning window
        sampler.sample(x=x0, n_steps=30, return_trajectory=True, thin=3, nan_check_every=30)
    for (lo, hi), true in zip(info.value.windows, first[[1, 3]].tolist()):
        assert lo <= true <= hi and hi - lo == 2 and hi % 3 == 0


def test_nan_checks_follow_steps_when_a_call_advances_several():
    """A sampler whose step() advances ctx.n steps (a macro step) is checked after the first
    call that reaches each multiple of nan_check_every, and its windows are in steps."""

    class Jumps(BaseSampler):
        def steps_per_call(self, state, ctx):
            return 3

        def step(self, state, ctx):
            # step k (1-based) of chain 1 is NaN from k = 7 on
            done = ctx.i + ctx.n
            x = state["x"].clone()
            if done >= 7:
                x[1] = float("nan")
            state["x"] = x
            return state

    with pytest.raises(NonFiniteError) as info:
        Jumps(HarmonicModel(), nan_policy="raise").sample(
            x=torch.zeros(3, 2), n_steps=20, nan_check_every=4
        )
    # calls end at steps 3, 6, 9, ...; checks at 6 (>= 4) and 9 (>= 8): NaN seen at 9
    assert info.value.indices == [1] and info.value.windows == [(7, 9)]


def test_nan_bookkeeping_does_not_grow_with_the_number_of_checks():
    """A long run checked at every step keeps per-chain records, not one per check: the Python
    memory a call holds at its end is the same for 200 and 20,000 steps (a list of the check
    steps held 36 bytes per check, 720 kB here)."""

    class Still(BaseSampler):
        def step(self, state, ctx):
            return state

    def held_at_end(n_steps: int) -> int:
        sampler = Still(HarmonicModel())
        held = []

        def finish(state, ctx):  # the loop's last hook, while its bookkeeping is alive
            held.append(tracemalloc.get_traced_memory()[0] - before)

        sampler.finish = finish
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        sampler.sample(x=torch.zeros(4, 2), n_steps=n_steps, nan_check_every=1)
        tracemalloc.stop()
        return held[0]

    held_at_end(200)  # warm caches
    assert held_at_end(20_000) - held_at_end(200) < 50_000


def test_nan_check_every_is_validated():
    with pytest.raises(ValueError, match="nan_check_every"):
        GradientDescentSampler(HarmonicModel(), step_size=0.1).sample(
            dim=1, n_steps=3, nan_check_every=0
        )


def test_nan_policy_warn_returns_the_non_finite_chains():
    model, x0, eta, _ = _diverging_setup()
    sampler = GradientDescentSampler(model, step_size=eta, nan_policy="warn")
    with pytest.warns(RuntimeWarning, match=r"2 of 4 chains"):
        out = sampler.sample(x=x0, n_steps=30)
    finite = torch.isfinite(out).all(1)
    assert finite.tolist() == [True, False, True, False]  # reported, never masked


def test_nan_policy_resample_restarts_chains_from_their_start():
    model, x0, eta, _ = _diverging_setup()
    sampler = GradientDescentSampler(model, step_size=eta)
    with pytest.warns(RuntimeWarning, match=r"restarted 2 of 4 chains"):
        traj = sampler.sample(x=x0, n_steps=30, nan_policy="resample", return_trajectory=True)
    assert torch.isfinite(traj).all()
    assert (traj[[0, 2], -1].abs() - 1).abs().max() < 1e-4  # healthy chains unaffected
    # a restarted chain is back at its start right after it went bad
    assert (traj[[1, 3]] == x0[[1, 3]].unsqueeze(1)).any(dim=1).all()


def test_nan_policy_is_validated_at_construction():
    with pytest.raises(ValueError, match="nan_policy"):
        LangevinDynamics(HarmonicModel(), nan_policy="ignore")


@pytest.mark.parametrize(
    "name", ["langevin", "langevin_heun", "hmc", "rmhmc", "gd", "nesterov", "flow_ode", "flow_sde"]
)
def test_the_loop_has_no_per_step_host_sync(name, monkeypatch):
    """Count tensor -> Python conversions: they must not grow with n_steps."""
    factory, kind = FACTORIES[name]
    sampler = factory(analytic_model(kind))
    calls = count_host_reads(monkeypatch)

    def run(n):
        calls["n"] = 0
        sampler.sample(x=torch.ones(8, 2), n_steps=n, return_diagnostics=True)
        return calls["n"]

    assert run(40) == run(10)


def test_convergence_stops_early_and_fills_the_remaining_rows():
    sampler = GradientDescentSampler(HarmonicModel(), step_size=0.5, grad_tol=1e-3)
    x0 = torch.tensor([[1.0], [4.0]])
    traj, diag = sampler.sample(x=x0, n_steps=200, return_trajectory=True, return_diagnostics=True)
    # |x_k| = 0.5^k |x_0| and the gradient is x: chain b stops after the first k with
    # 0.5^k |x_0| < 1e-3, i.e. k = 10 and 12 updates
    assert diag["steps_used"][-1].tolist() == [10, 12]
    torch.testing.assert_close(traj[:, -1], x0 * 0.5 ** torch.tensor([[10.0], [12.0]]))
    assert torch.equal(traj[:, 50], traj[:, -1]) and torch.equal(
        diag["energy"][50], diag["energy"][-1]
    )


@pytest.mark.slow  # torch.compile takes 15-40 s on a 2-core CPU
def test_compiled_and_eager_runs_agree():
    sampler = LangevinDynamics(HarmonicModel(), step_size=0.05)
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    eager = sampler.sample(x=x0, n_steps=5, generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = sampler.sample(
            x=x0, n_steps=5, generator=torch.Generator().manual_seed(1), compile=True
        )
    elapsed = time.perf_counter() - start
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    again = sampler.sample(
        x=x0, n_steps=5, generator=torch.Generator().manual_seed(1), compile=True
    )
    torch.testing.assert_close(again, compiled)
    print(f"first compiled sample(): {elapsed:.1f} s")


def test_the_memory_layout_of_x_does_not_change_the_draws():
    # a transposed x made noise buffers with transposed strides, so normal_ filled them in
    # another order: the same values and seed gave samples 0.68 apart
    from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics

    base = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    for sampler in (
        LangevinDynamics(GaussianModel(torch.zeros(2), torch.eye(2)), step_size=0.1),
        HamiltonianMonteCarlo(GaussianModel(torch.zeros(2), torch.eye(2)), step_size=0.1),
    ):
        outs = [
            sampler.sample(x=x, n_steps=5, generator=torch.Generator().manual_seed(1))
            for x in (base.t(), base.t().contiguous())
        ]
        assert torch.equal(outs[0], outs[1])


def test_half_precision_chains_warn_that_small_updates_vanish():
    # bfloat16 chains: a step of 1e-3 rounds away at |x| = 1 (gradient descent never moved;
    # Langevin kept only its noise: variance 16.5 for 1), in silence
    model = GaussianModel(torch.zeros(2), torch.eye(2), dtype=torch.bfloat16)
    sampler = GradientDescentSampler(model, step_size=1e-3, dtype=torch.bfloat16)
    with pytest.warns(RuntimeWarning, match="bfloat16 lose every update below its rounding"):
        out = sampler.sample(x=torch.ones(1, 2, dtype=torch.bfloat16), n_steps=100)
    assert torch.equal(out, torch.ones(1, 2, dtype=torch.bfloat16))  # what the warning means
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GradientDescentSampler(HarmonicModel(), step_size=1e-3).sample(x=torch.ones(1, 2))


def test_a_model_gradient_of_another_dtype_is_cast_to_the_chains_dtype():
    # a float64 buffer's gradient made HMC's and gradient descent's float32 chains float64
    # (the trajectory stayed float32, the diagnostics float64) and was cut into Langevin's;
    # the chains keep their dtype, as with the analytic models (which compute in their own)
    class Precision(BaseModel):
        def __init__(self):
            super().__init__()
            self.register_buffer("d", torch.tensor([1.0, 2.0], dtype=torch.float64))

        def forward(self, x):
            return 0.5 * (self.d * x**2).sum(-1)

        def gradient(self, x, model_kwargs=None):
            return self.d * x

    x0 = torch.ones(3, 2)
    out = GradientDescentSampler(Precision(), step_size=0.1).sample(x=x0, n_steps=3)
    assert out.dtype == torch.float32
    expected = x0.double() * (1 - 0.1 * torch.tensor([1.0, 2.0], dtype=torch.float64)) ** 3
    torch.testing.assert_close(out, expected.float(), rtol=1e-6, atol=1e-7)
    traj = LangevinDynamics(Precision()).sample(x=x0, n_steps=3, return_trajectory=True)
    assert traj.dtype == torch.float32
