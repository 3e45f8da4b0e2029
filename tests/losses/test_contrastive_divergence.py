"""Contrastive divergence family: objective, call forms, replay buffer, state, PT, training."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from _support.dtypes import default_dtype
from _support.losses import MLPEnergy, Quadratic, TinyLangevin, mixture_2d, mmd_rbf
from _support.offset import OffsetQuadratic
from torch import nn

from torchebm.core import BaseModel, BaseSampler, GaussianModel
from torchebm.core.errors import NonFiniteError
from torchebm.losses import (
    ContrastiveDivergence,
    ParallelTemperingCD,
    PersistentContrastiveDivergence,
)


def gen(seed):
    return torch.Generator().manual_seed(seed)


class Identity(TinyLangevin):
    """A 'sampler' that leaves its input unchanged (isolates buffer and swap logic)."""

    @torch.no_grad()
    def sample(
        self, x=None, dim=None, n_steps=10, n_samples=1, *, model_kwargs=None, generator=None
    ):
        self.calls += 1
        return x.clone()


class LabelQuadratic(BaseModel):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5, 2.0]))

    def forward(self, x, y):
        return 0.5 * self.w[y] * x.pow(2).sum(-1)


# --------------------------------------------------------------------------- objective
def test_loss_value_and_detached_negatives():
    model = MLPEnergy()
    cd = ContrastiveDivergence(model, TinyLangevin(model), k_steps=5, energy_reg_weight=0.1)
    x = torch.randn(32, 2, generator=gen(0))
    loss, neg = cd(x, generator=gen(1))
    assert loss.shape == () and neg.shape == x.shape and not neg.requires_grad
    with torch.no_grad():
        ep, en = model(x), model(neg)
    expected = ep.mean() - en.mean() + 0.1 * (ep.pow(2).mean() + en.pow(2).mean())
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_cd_k_starts_at_the_data():
    model = Quadratic(1.0)
    cd = ContrastiveDivergence(model, Identity(model), k_steps=3, energy_reg_weight=0.0)
    x = torch.randn(8, 2, generator=gen(0))
    loss, neg = cd(x)
    torch.testing.assert_close(neg, x)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def test_cd_k_never_writes_to_the_data_and_never_returns_it():
    """CD-k hands the data to a BaseSampler uncopied (its contract: starting chains are
    never modified); the negatives are never the data tensor itself, even from a sampler
    that returns its starting chains unchanged."""

    class Descent(BaseSampler):  # a step that writes new chains (the library's samplers)
        def step(self, state, ctx):
            state.x = state.x - 0.1 * self.gradient_fn(ctx)(state.x)
            return state

    class Stay(BaseSampler):  # hands its starting chains back
        def step(self, state, ctx):
            return state

    x = torch.randn(16, 2, generator=gen(0))
    kept = x.clone()
    model = MLPEnergy()
    for sampler in (Descent(model), Stay(model)):
        _, neg = ContrastiveDivergence(model, sampler, k_steps=3)(x, generator=gen(1))
        neg.add_(1.0)  # a caller editing the negatives in place
        assert torch.equal(x, kept)


def test_k_steps_default_and_model_from_sampler():
    model = Quadratic()
    assert ContrastiveDivergence(model, TinyLangevin(model)).k_steps == 10
    seed_sampler = TinyLangevin(model, n_steps=60)
    cd = ContrastiveDivergence(sampler=seed_sampler)
    assert cd.model is model and cd.k_steps == 60
    with pytest.raises(TypeError, match="requires a sampler"):
        ContrastiveDivergence(model)
    with pytest.raises(TypeError, match="sample"):
        ContrastiveDivergence(model, sampler=object())


def test_seed_call_form_returns_scalar_and_warns_once():
    model = MLPEnergy()
    cd = ContrastiveDivergence(sampler=TinyLangevin(model, n_steps=3))
    x = torch.randn(16, 2, generator=gen(0))
    with pytest.warns(DeprecationWarning, match="loss_fn\\(x\\)"):
        loss = cd(x, model)
    assert isinstance(loss, torch.Tensor) and loss.shape == ()
    loss.backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cd(x, model)  # warned once per process only
    with pytest.raises(ValueError, match="not the model"):
        cd(x, MLPEnergy())
    with pytest.raises(TypeError, match="one positional"):
        cd(x, model, 3)


def test_deprecated_forward_options():
    model = Quadratic(1.0)
    cd = ContrastiveDivergence(model, Identity(model), k_steps=1, energy_reg_weight=0.5)
    x = torch.randn(8, 2, generator=gen(0))
    with pytest.warns(DeprecationWarning, match="constructor"):
        loss, _ = cd(x, energy_reg_weight=0.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)  # per-call override took effect
    assert cd.energy_reg_weight == 0.5


def test_add_noise_to_real_jitters_positives_only():
    model = Quadratic(1.0)
    cd = ContrastiveDivergence(
        model,
        Identity(model),
        k_steps=1,
        energy_reg_weight=0.0,
        add_noise_to_real=True,
        noise_scale=0.5,
    )
    x = torch.zeros(4000, 2)
    loss, neg = cd(x, generator=gen(0))
    # E(x + 0.5 xi) = 0.125 |xi|^2: mean 0.25 in 2-D; negatives stay at 0
    assert loss.item() == pytest.approx(0.25, rel=0.05)
    assert torch.equal(neg, x)


def test_conditioning_reaches_energies_and_sampler():
    model = LabelQuadratic()
    sampler = TinyLangevin(model, step_size=0.05)
    cd = ContrastiveDivergence(model, sampler, k_steps=200, energy_reg_weight=0.0)
    x = torch.randn(2000, 2, generator=gen(0)) * 3
    y = torch.cat([torch.zeros(1000, dtype=torch.long), torch.ones(1000, dtype=torch.long)])
    loss, neg = cd(x, model_kwargs={"y": y}, generator=gen(1))
    # chains for label 0 equilibrate to N(0, 1/0.5), for label 1 to N(0, 1/2)
    assert neg[:1000].var().item() == pytest.approx(2.0 / (1 - 0.0125), rel=0.1)
    assert neg[1000:].var().item() == pytest.approx(0.5 / (1 - 0.05), rel=0.1)
    with torch.no_grad():
        expected = model(x, y).mean() - model(neg, y).mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- replay buffer
def make_pcd(size=20, ratio=0.0, **kw):
    model = Quadratic(1.0)
    return PersistentContrastiveDivergence(
        model, Identity(model), k_steps=2, buffer_size=size, new_sample_ratio=ratio, **kw
    )


def test_stratified_reads():
    pcd = make_pcd(20)
    pcd.initialize_buffer((1,))
    pcd.replay_buffer.copy_(torch.arange(20.0).unsqueeze(1))
    for seed in range(5):
        start = pcd.get_start_points(torch.zeros(4, 1), generator=gen(seed)).squeeze(1)
        strata = (start // 5).long()
        assert strata.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "size, bounds",
    [(10, [0, 2, 5, 7, 10]), (12, [0, 3, 6, 9, 12])],
    ids=["batch_does_not_divide", "batch_divides"],
)
def test_stratified_reads_reach_every_row_of_their_stratum_uniformly(size, bounds):
    # batches of 4: strata [floor(size i / 4), floor(size (i + 1) / 4)); one uniform row per
    # stratum, so row r is drawn with probability 1 / width. With 10 rows, strata of width
    # 10 // 4 = 2 left rows 8 and 9 unread (the chains written there were never continued);
    # with 12 rows, a draw below width - 1 would leave every third row unread
    pcd = make_pcd(size)
    pcd.initialize_buffer((1,))
    pcd.replay_buffer.copy_(torch.arange(float(size)).unsqueeze(1))
    draws = 2000
    counts = torch.zeros(size)
    g = gen(0)
    for _ in range(draws):
        rows = pcd.get_start_points(torch.zeros(4, 1), generator=g).squeeze(1).long()
        assert all(lo <= r < hi for r, lo, hi in zip(rows.tolist(), bounds, bounds[1:]))
        counts[rows] += 1
    for lo, hi in zip(bounds, bounds[1:]):
        p = 1.0 / (hi - lo)
        sd = (p * (1 - p) / draws) ** 0.5
        assert ((counts[lo:hi] / draws - p).abs() < 5 * sd).all(), counts


def test_fifo_update_pointer_and_age():
    pcd = make_pcd(5)
    pcd.initialize_buffer((1,))
    pcd.update_buffer(torch.full((3, 1), 1.0))
    assert pcd._ptr == 3 and int(pcd.buffer_ptr) == 3
    pcd.update_buffer(torch.full((3, 1), 2.0), ages=torch.tensor([7, 8, 9]))
    assert pcd.replay_buffer.squeeze(1).tolist() == [2.0, 1.0, 1.0, 2.0, 2.0]
    assert pcd.buffer_age.tolist() == [9, 2, 2, 7, 8] and int(pcd.buffer_ptr) == 1
    pcd.update_buffer(torch.arange(7.0).unsqueeze(1))  # larger than the buffer: keep the last 5
    assert pcd.replay_buffer.squeeze(1).tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert int(pcd.buffer_ptr) == 0


def test_forward_continues_chains_and_ages():
    model = Quadratic(1.0)
    pcd = PersistentContrastiveDivergence(
        model, TinyLangevin(model), k_steps=3, buffer_size=8, new_sample_ratio=0.0
    )
    x = torch.randn(8, 2, generator=gen(0))
    _, neg1 = pcd(x, generator=gen(1))
    torch.testing.assert_close(pcd.replay_buffer, neg1)  # buffer == batch: exact PCD
    assert pcd.buffer_age.tolist() == [3] * 8
    _, neg2 = pcd(x, generator=gen(2))
    assert pcd.buffer_age.tolist() == [6] * 8
    assert not torch.allclose(neg1, neg2)


def test_reinitialisation_probability():
    pcd = make_pcd(1000, ratio=0.3, init_noise_scale=1.0)
    pcd.initialize_buffer((1,))
    pcd.replay_buffer.fill_(100.0)
    pcd.buffer_age.fill_(50)
    start, age = pcd._draw_start(torch.zeros(1000, 1), gen(0))
    fresh = start.squeeze(1).abs() < 50
    # Bernoulli(0.3) per chain: 300 +- 4 sd (sd = 14.5)
    assert 240 < int(fresh.sum()) < 360
    assert (age[fresh] == 0).all() and (age[~fresh] == 50).all()
    assert start[fresh].std().item() == pytest.approx(1.0, rel=0.15)


def test_small_buffer_warns_and_draws_with_replacement():
    pcd = make_pcd(4)
    with pytest.warns(UserWarning, match="smaller than the batch"):
        _, neg = pcd(torch.zeros(10, 2))
    assert neg.shape == (10, 2)


def test_init_steps_burn_in():
    model = Quadratic(1.0)
    sampler = TinyLangevin(model)
    pcd = ContrastiveDivergence(model, sampler, persistent=True, buffer_size=50, init_steps=7)
    pcd.initialize_buffer((2,), buffer_chunk_size=16, generator=gen(0))
    assert sampler.calls == 4  # ceil(50 / 16) chunks
    assert pcd.buffer_age.tolist() == [7] * 50
    assert pcd.buffer_initialized and pcd.replay_buffer.shape == (50, 2)


def test_buffer_event_shape_mismatch():
    pcd = make_pcd(8)
    pcd(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="event shape"):
        pcd(torch.zeros(4, 3))


def test_state_dict_round_trip_without_initialize_buffer():
    def build():
        torch.manual_seed(0)
        model = MLPEnergy()
        return PersistentContrastiveDivergence(
            model, TinyLangevin(model), k_steps=4, buffer_size=48, new_sample_ratio=0.1
        )

    pcd = build()
    for seed in range(3):
        pcd(torch.randn(16, 2, generator=gen(seed)), generator=gen(10 + seed))
    blob = io.BytesIO()
    torch.save(pcd.state_dict(), blob)
    blob.seek(0)
    state = torch.load(blob, weights_only=True)
    assert {"replay_buffer", "buffer_age", "buffer_ptr"} <= set(state)
    fresh = build()
    assert not fresh.buffer_initialized
    fresh.load_state_dict(state)
    assert fresh.buffer_initialized and fresh._ptr == pcd._ptr == 0
    torch.testing.assert_close(fresh.replay_buffer, pcd.replay_buffer)
    assert torch.equal(fresh.buffer_age, pcd.buffer_age)
    x = torch.randn(16, 2, generator=gen(99))
    la, na = pcd(x, generator=gen(5))
    lb, nb = fresh(x, generator=gen(5))
    torch.testing.assert_close(na, nb)
    torch.testing.assert_close(la, lb)
    small = PersistentContrastiveDivergence(fresh.model, fresh.sampler, buffer_size=10)
    with pytest.raises(RuntimeError, match="buffer_size=10"):
        small.load_state_dict(state)


def test_buffer_follows_dtype_and_device_moves():
    pcd = make_pcd(8)
    pcd(torch.zeros(4, 2))
    pcd.double()
    assert pcd.replay_buffer.dtype == torch.float64 and pcd.buffer_age.dtype == torch.long
    loss, neg = pcd(torch.zeros(4, 2))
    assert loss.dtype == torch.float64 and neg.dtype == torch.float64


def test_mix_buffer_across_ranks_errors_and_single_process_noop():
    q = Quadratic()
    cd = ContrastiveDivergence(q, Identity(q))
    with pytest.raises(RuntimeError, match="persistent"):
        cd.mix_buffer_across_ranks()
    pcd = make_pcd(8)
    with pytest.raises(RuntimeError, match="initialised"):
        pcd.mix_buffer_across_ranks()
    pcd.initialize_buffer((2,))
    before = pcd.replay_buffer.clone()
    pcd.mix_buffer_across_ranks()  # no process group: no-op
    assert torch.equal(before, pcd.replay_buffer)


# --------------------------------------------------------------------------- policies, errors
class NaNEnergy(BaseModel):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return self.w * x.sum(-1) * float("nan")

    def gradient(self, x, model_kwargs=None):
        return torch.zeros_like(x)


def test_non_finite_loss_raises_or_warns_never_constant():
    model = NaNEnergy()
    x = torch.ones(4, 2)
    with pytest.raises(NonFiniteError, match="non-finite"):
        ContrastiveDivergence(model, TinyLangevin(model), k_steps=1)(x)
    cd = ContrastiveDivergence(model, TinyLangevin(model), k_steps=1, nan_policy="warn")
    with pytest.warns(RuntimeWarning, match="non-finite"):
        loss, _ = cd(x)
    assert torch.isnan(loss)
    cd = ContrastiveDivergence(model, TinyLangevin(model), k_steps=1, nan_policy="deferred")
    cd(x)
    with pytest.raises(NonFiniteError):
        cd.check_finite()


@pytest.mark.parametrize("persistent", [False, True])
def test_non_finite_data_is_named_with_its_rows(persistent):
    # PCD's chains start in its buffer, so no sampler sees the data: the loss names it
    model = Quadratic()
    loss_fn = ContrastiveDivergence(
        model, Identity(model), k_steps=1, persistent=persistent, buffer_size=32
    )
    x = torch.randn(8, 2, generator=gen(0))
    x[5, 0] = float("nan")
    with pytest.raises(
        NonFiniteError, match=r"x contains NaN or inf values at batch indices \[5\]"
    ):
        loss_fn(x)


def test_constructor_validation():
    model = Quadratic()
    s = TinyLangevin(model)
    for kwargs, match in [
        ({"k_steps": 0}, "k_steps"),
        ({"buffer_size": 0}, "buffer_size"),
        ({"new_sample_ratio": 1.5}, "new_sample_ratio"),
        ({"init_steps": -1}, "init_steps"),
        ({"energy_reg_weight": -0.1}, "energy_reg_weight"),
        ({"noise_scale": -1.0}, "noise_scale"),
        ({"init_noise_scale": 0.0}, "init_noise_scale"),
    ]:
        with pytest.raises(ValueError, match=match):
            ContrastiveDivergence(model, s, **kwargs)
    with pytest.raises(TypeError, match="persistent"):
        ContrastiveDivergence(model, s, persistent="yes")
    with pytest.raises(TypeError, match="k_steps"):
        ContrastiveDivergence(model, s, k_steps=2.5)


def test_bad_inputs():
    model = Quadratic()
    cd = ContrastiveDivergence(model, TinyLangevin(model), k_steps=1)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        cd([[1.0, 2.0]])
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        cd(torch.ones(3))
    with pytest.raises(TypeError, match="floating-point"):
        cd(torch.ones(3, 2, dtype=torch.int64))

    class Bad(BaseModel):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        ContrastiveDivergence(Bad(), Identity(Bad()), k_steps=1)(torch.ones(3, 2))

    class BadSampler(Identity):
        def sample(self, x=None, n_steps=1, **kw):
            return x[:1]

    with pytest.raises(ValueError, match="sampler.sample returned"):
        ContrastiveDivergence(model, BadSampler(model), k_steps=1)(torch.ones(3, 2))


def test_buffer_reads_and_restarts_do_not_follow_the_default_dtype():
    """The rows a generator seed reads (strata of unequal width: 10 rows, batches of 4) and
    the chains it restarts (``new_sample_ratio``) are the same after
    ``torch.set_default_dtype(torch.float64)``: the uniforms are float32 as in a float32 run."""
    pcd = make_pcd(10, ratio=0.5)
    pcd.initialize_buffer((1,))
    pcd.replay_buffer.copy_(torch.arange(10.0).unsqueeze(1))
    x = torch.zeros(4, 1)

    def start():
        return pcd.get_start_points(x, generator=gen(0))

    narrow = [start() for _ in range(2)]
    state = torch.get_rng_state()
    with default_dtype(torch.float64):
        wide = start()
    assert torch.equal(narrow[0], narrow[1]) and torch.equal(wide, narrow[0])
    assert torch.equal(torch.get_rng_state(), state)


def test_generator_determinism_and_global_rng_untouched():
    model = MLPEnergy()
    pcd = PersistentContrastiveDivergence(model, TinyLangevin(model), k_steps=3, buffer_size=32)
    x = torch.randn(8, 2, generator=gen(0))
    state = torch.get_rng_state()
    pcd(x, generator=gen(1))
    assert torch.equal(torch.get_rng_state(), state)
    a = PersistentContrastiveDivergence(model, TinyLangevin(model), k_steps=3, buffer_size=32)
    b = PersistentContrastiveDivergence(model, TinyLangevin(model), k_steps=3, buffer_size=32)
    for seed in range(2):
        (la, na), (lb, nb) = a(x, generator=gen(seed)), b(x, generator=gen(seed))
        assert torch.equal(na, nb) and torch.equal(la, lb)


# --------------------------------------------------------------------------- parallel tempering
def test_pt_construction_validation():
    model = Quadratic()
    s = TinyLangevin(model)
    with pytest.raises(ValueError, match="start at 1.0"):
        ParallelTemperingCD(model, s, temperatures=(2.0, 4.0))
    with pytest.raises(ValueError, match="strictly increasing"):
        ParallelTemperingCD(model, s, temperatures=(1.0, 3.0, 2.0))
    with pytest.raises(ValueError, match="at least two"):
        ParallelTemperingCD(model, s, temperatures=(1.0,))
    with pytest.raises(ValueError, match="temperatures\\[1\\]"):
        ParallelTemperingCD(model, s, temperatures=(1.0, -2.0))
    with pytest.raises(ValueError, match="swap_every"):
        ParallelTemperingCD(model, s, swap_every=0)

    class NoModel:
        def sample(self, x=None, n_steps=1, **kw):
            return x

    with pytest.raises(TypeError, match="'model' attribute"):
        ParallelTemperingCD(model, NoModel())
    pt = ParallelTemperingCD(model, s)
    with pytest.raises(NotImplementedError, match="conditioning"):
        pt(torch.zeros(4, 2), model_kwargs={"y": torch.zeros(4)})


def test_pt_swaps_preserve_replica_targets():
    # replicas start exactly at N(0, T_r); swaps alone (identity 'sampler') must keep them there.
    # A wrong acceptance rule (e.g. the opposite sign) drives hot states into the cold replica.
    temps = (1.0, 2.0, 4.0, 8.0)
    model = GaussianModel(torch.zeros(1), torch.eye(1))
    pt = ParallelTemperingCD(model, Identity(model), temperatures=temps, k_steps=40)
    g = gen(0)
    pt.tempered_chains = torch.randn(4, 4000, 1, generator=g) * torch.tensor(temps).sqrt().view(
        4, 1, 1
    )
    neg = pt.negative_phase(torch.zeros(4000, 1), generator=g)
    variances = pt.tempered_chains.var(dim=(1, 2))
    torch.testing.assert_close(variances, torch.tensor(temps), rtol=0.1, atol=0.0)
    assert neg.var().item() == pytest.approx(1.0, rel=0.1)
    # acceptance for N(0,T) neighbours at ratio 2 is about 0.6
    assert (pt.swap_acceptance > 0.4).all() and (pt.swap_acceptance < 0.8).all()


def test_pt_cold_chain_crosses_barrier():
    class DoubleWell1D(BaseModel):
        def forward(self, x):
            return 10.0 * (x.pow(2) - 1).pow(2).sum(-1)

        def gradient(self, x, model_kwargs=None):
            return 40.0 * x * (x.pow(2) - 1)

    model = DoubleWell1D()
    sampler = TinyLangevin(model, step_size=0.005)
    pt = ParallelTemperingCD(model, sampler, temperatures=(1.0, 3.0, 9.0, 27.0), k_steps=20)
    pt.tempered_chains = torch.ones(4, 300, 1)  # every replica starts in the right well
    g = gen(1)
    for _ in range(40):
        neg = pt.negative_phase(torch.zeros(300, 1), generator=g)
    assert sampler.model is model  # restored after the tempered run
    left = (neg < 0).float().mean().item()
    assert 0.38 < left < 0.62  # symmetric target: half the cold chains in each well
    x = torch.ones(300, 1)
    for _ in range(40):
        x = sampler.sample(x=x, n_steps=20, generator=g)
    assert (x < 0).float().mean().item() < 0.05  # plain Langevin stays trapped


def test_pt_state_round_trip_and_sampler_restored_on_error():
    model = MLPEnergy()
    pt = ParallelTemperingCD(model, TinyLangevin(model), temperatures=(1.0, 2.0), k_steps=2)
    pt(torch.randn(6, 2, generator=gen(0)), generator=gen(1))
    state = pt.state_dict()
    fresh = ParallelTemperingCD(model, TinyLangevin(model), temperatures=(1.0, 2.0), k_steps=2)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.tempered_chains, pt.tempered_chains)

    class Exploding(TinyLangevin):
        def sample(self, x=None, n_steps=1, **kw):
            raise RuntimeError("boom")

    sampler = Exploding(model)
    bad = ParallelTemperingCD(model, sampler, temperatures=(1.0, 2.0), k_steps=2)
    with pytest.raises(RuntimeError, match="boom"):
        bad(torch.zeros(4, 2))
    assert sampler.model is model


def test_pt_checkpoint_chains_must_fit_the_ladder_and_n_chains():
    # chains (R, n, *event) of another ladder or n_chains loaded silently: the next call
    # failed with an unclear row count, or ran n_chains the constructor did not ask for
    model = MLPEnergy()
    pt = ParallelTemperingCD(model, TinyLangevin(model), temperatures=(1.0, 2.0, 4.0), k_steps=1)
    pt(torch.randn(6, 2, generator=gen(0)), generator=gen(1))
    state = pt.state_dict()
    assert tuple(state["tempered_chains"].shape) == (3, 6, 2)
    two = ParallelTemperingCD(model, TinyLangevin(model), temperatures=(1.0, 2.0), k_steps=1)
    with pytest.raises(
        RuntimeError, match=r"tempered_chains in the checkpoint have shape \(3, 6, 2\)"
    ):
        two.load_state_dict(state)
    four = ParallelTemperingCD(
        model, TinyLangevin(model), temperatures=(1.0, 2.0, 4.0), n_chains=4, k_steps=1
    )
    with pytest.raises(RuntimeError, match="n_chains=4"):
        four.load_state_dict(state)
    six = ParallelTemperingCD(
        model, TinyLangevin(model), temperatures=(1.0, 2.0, 4.0), n_chains=6, k_steps=1
    )
    six.load_state_dict(state)
    assert torch.equal(six.tempered_chains, pt.tempered_chains)


def test_pt_inverse_temperatures_are_float64():
    q = Quadratic()
    pt = ParallelTemperingCD(q, TinyLangevin(q), temperatures=(1.0, 3.0))
    beta = pt.inverse_temperatures
    assert beta.dtype == torch.float64
    assert abs(beta[1].item() - 1.0 / 3.0) < 1e-16  # float32 rounding was 9.9e-9 off


def test_a_replay_buffer_does_not_load_into_a_non_persistent_loss():
    # it loaded and was never used: the resumed run silently lost its persistent chains
    model = MLPEnergy()
    pcd = PersistentContrastiveDivergence(model, TinyLangevin(model), k_steps=1, buffer_size=16)
    pcd(torch.randn(8, 2, generator=gen(0)), generator=gen(1))
    cd = ContrastiveDivergence(model, TinyLangevin(model), k_steps=1)
    with pytest.raises(RuntimeError, match="replay buffer .* persistent=False"):
        cd.load_state_dict(pcd.state_dict())


# --------------------------------------------------------------------------- training
@pytest.mark.parametrize("persistent", [False, True], ids=["cd", "pcd"])
def test_quadratic_energy_learns_data_precision(persistent):
    # data N(0, 0.25 I); Langevin with h = 0.05 is biased: the fixed point w solves
    # w (1 - h w / 2) = 4, i.e. w = 4.51 (the reference implementation reports 4.4)
    torch.manual_seed(0)
    model = Quadratic(1.0)
    sampler = TinyLangevin(model, step_size=0.05)
    cd = ContrastiveDivergence(
        model,
        sampler,
        k_steps=20,
        persistent=persistent,
        buffer_size=256,
        init_steps=0,
        new_sample_ratio=0.0,
        energy_reg_weight=0.0,
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    g = gen(3)
    tail = []
    for i in range(300):
        loss, _ = cd(0.5 * torch.randn(256, 2, generator=g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 200:
            tail.append(model.w.item())
    w = sum(tail) / len(tail)
    fixed_point = (1 - (1 - 2 * 0.05 * 4) ** 0.5) / 0.05  # root of w (1 - h w / 2) = 4
    assert w == pytest.approx(fixed_point, rel=0.06)


def model_samples(model, n=500, steps=300, seed=5):
    g = gen(seed)
    return TinyLangevin(model, step_size=0.01).sample(
        x=2 * torch.randn(n, 2, generator=g), n_steps=steps, generator=g
    )


@pytest.mark.parametrize("kind", ["cd", "pcd", "pt"])
def test_training_on_2d_mixture_lowers_mmd(kind):
    torch.manual_seed(0)
    model = MLPEnergy(2, 32)
    data = mixture_2d(500, gen(11))
    before = mmd_rbf(model_samples(model), data)
    sampler = TinyLangevin(model, step_size=0.01)
    if kind == "cd":
        loss_fn = ContrastiveDivergence(model, sampler, k_steps=20)
    elif kind == "pcd":
        loss_fn = PersistentContrastiveDivergence(
            model, sampler, k_steps=20, buffer_size=1000, init_noise_scale=2.0
        )
    else:
        loss_fn = ParallelTemperingCD(
            model, sampler, temperatures=(1.0, 3.0), k_steps=10, init_noise_scale=2.0
        )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = gen(3)
    for _ in range(200 if kind == "pt" else 300):
        loss, _ = loss_fn(mixture_2d(128, g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = mmd_rbf(model_samples(model), data)
    assert after < 0.2 * before, (before, after)
    assert after < 0.15


def test_pt_base_temperature_must_be_the_samplers_stationary_temperature():
    """A sampler declaring the temperature it samples (Langevin: noise_scale**2) must have it
    as base_temperature: the default 1.0 beside sigma = 0.5 gave every swap the wrong
    temperatures (ten times the mass in the minor mode of a mixture, in silence). A sampler
    declaring none (a user's random walk whose noise_scale is a proposal width) is not
    checked."""
    model = GaussianModel(torch.zeros(1), torch.eye(1))

    class Declared(TinyLangevin):
        @property
        def stationary_temperature(self):
            return self.noise_scale**2

    pt = ParallelTemperingCD(model, Declared(model, noise_scale=0.5), k_steps=1)
    with pytest.raises(ValueError, match=r"base_temperature=1.0 .*T0 = 0.25.*=0.25"):
        pt(torch.zeros(8, 1), generator=gen(0))
    for sampler, base in (
        (Declared(model, noise_scale=0.5), 0.25),
        (TinyLangevin(model, 0.05, 0.3), 1.0),
    ):
        right = ParallelTemperingCD(model, sampler, k_steps=1, base_temperature=base)
        assert torch.isfinite(right(torch.zeros(8, 1), generator=gen(0))[0])


def test_pt_swap_energies_are_computed_outside_autocast():
    """The swap test under an ambient bfloat16 autocast used the rounded energies; the
    decisions are those of float32 now (the chains themselves do not move: Identity)."""
    model = OffsetQuadratic()
    start = torch.randn(3, 2000, 1, generator=gen(1)) * torch.tensor([1.0, 2.0, 4.0]).view(3, 1, 1)
    ends = []
    for autocast in (False, True):
        pt = ParallelTemperingCD(model, Identity(model), temperatures=(1.0, 2.0, 4.0), k_steps=4)
        pt.tempered_chains = start.clone()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            pt.negative_phase(torch.zeros(2000, 1), generator=gen(2))
        ends.append(pt.tempered_chains)
    assert torch.equal(ends[0], ends[1])


def test_each_deprecated_forward_option_warns():
    # one once-per-process key covered every option: after energy_reg_weight=, a call passing
    # noise_scale= (another option) was not told
    from torchebm.core._module import _WARNED

    for key in [k for k in _WARNED if "ContrastiveDivergence.forward options" in k]:
        _WARNED.discard(key)
    model = Quadratic(1.0)
    cd = ContrastiveDivergence(model, Identity(model), k_steps=1)
    x = torch.randn(8, 2, generator=gen(0))
    with pytest.warns(DeprecationWarning, match=r"\['energy_reg_weight'\]"):
        cd(x, energy_reg_weight=0.0)
    with pytest.warns(DeprecationWarning, match=r"\['noise_scale'\]"):
        cd(x, noise_scale=0.1)


def test_persistent_chains_refuse_every_per_sample_conditioning():
    # before: only a tensor was refused; a list of prompts or a numpy array ran the buffer's
    # chains under another row's prompt (or crashed with a bare RuntimeError)
    import numpy as np

    from torchebm.core.errors import ConfigurationError

    class AnyLabel(BaseModel):  # reads no label: only the refusal is under test
        def forward(self, x, y=None):
            return 0.5 * x.square().sum(-1)

    b = 4
    per_sample = {
        "tensor": torch.arange(b),
        "list": ["a" * (i + 1) for i in range(b)],
        "numpy": np.arange(b),
        "dict": {"ids": ["a"] * b},
        "tuple": (torch.arange(b), 7),
    }
    for y in per_sample.values():
        model = AnyLabel()
        pcd = PersistentContrastiveDivergence(
            model, Identity(model), k_steps=1, buffer_size=b, check_conditioning=False
        )
        with pytest.raises(ConfigurationError, match=r"per-sample conditioning \['y'\]"):
            pcd(torch.randn(b, 2, generator=gen(0)), model_kwargs={"y": y}, generator=gen(1))
    # a value shared by the batch (a hyper-parameter, a list of another length) still runs
    model = AnyLabel()
    pcd = PersistentContrastiveDivergence(
        model, Identity(model), k_steps=1, buffer_size=b, check_conditioning=False
    )
    for _ in range(2):
        pcd(torch.randn(b, 2, generator=gen(0)), model_kwargs={"y": (64, 32)}, generator=gen(1))


def test_persistent_refusal_of_a_list_of_batch_length_says_a_tuple_is_shared():
    # a shared setting whose length happens to equal the batch is per-sample by the rule
    # (a list of B items); the message said nothing of the way to pass it as shared
    from torchebm.core.errors import ConfigurationError

    class AnySize(BaseModel):
        def forward(self, x, size=None):
            return 0.5 * x.square().sum(-1)

    model = AnySize()
    pcd = PersistentContrastiveDivergence(
        model, Identity(model), k_steps=1, buffer_size=4, check_conditioning=False
    )
    x = torch.randn(2, 2, generator=gen(0))
    with pytest.raises(ConfigurationError, match=r"list of 2 items.*passes as a tuple"):
        pcd(x, model_kwargs={"size": [64, 32]}, generator=gen(1))
    pcd(x, model_kwargs={"size": (64, 32)}, generator=gen(1))  # the tuple: shared, it runs
