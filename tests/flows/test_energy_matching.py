"""EnergyMatchingLoss: flow term, contrastive term, internal Langevin, duck-typed samplers."""

import math

import pytest
import torch
from torch import nn

from torchebm.core import BaseLoss, ConstantScheduler, LinearScheduler
from torchebm.flows import EnergyMatchingLoss, compute_flow_weight, trimmed_mean

F64 = torch.float64


class Quadratic(nn.Module):
    """V(x) = a/2 |x - m|^2 with learnable a, m."""

    def __init__(self, a=1.0, dim=2):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a), dtype=F64))
        self.m = nn.Parameter(torch.zeros(dim, dtype=F64))

    def forward(self, x):
        return 0.5 * self.a * (x - self.m).square().sum(-1)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1)
        )

    def forward(self, x):
        return self.net(x).squeeze(-1)


def test_flow_term_closed_form():
    """Linear path, sigma = 0, no gating: loss = E|a x_t - u_t|^2 with x_t, u_t from the pairs."""
    model = Quadratic(a=0.5)
    em = EnergyMatchingLoss(
        model, coupling="independent", sigma=0.0, flow_weight_cutoff=1.0, lambda_cd=0.0, dtype=F64
    )
    x1, x0 = torch.randn(64, 2, dtype=F64), torch.randn(64, 2, dtype=F64)
    g = torch.Generator().manual_seed(0)
    terms = em.training_losses(x1, x0=x0, generator=g)
    t = torch.rand(64, generator=torch.Generator().manual_seed(0), dtype=F64).reshape(-1, 1)
    xt, ut = t * x1 + (1 - t) * x0, x1 - x0
    manual = (-0.5 * xt - ut).square().mean(1).mean()
    assert terms["flow_loss"].item() == pytest.approx(manual.item(), rel=1e-10)
    assert terms["cd_loss"].item() == 0.0 and "negatives" not in terms


def test_flow_weight_gate_is_applied():
    model = Quadratic(a=0.5)
    x1, x0 = torch.randn(64, 2, dtype=F64), torch.randn(64, 2, dtype=F64)
    kw = dict(coupling="independent", sigma=0.0, lambda_cd=0.0, dtype=F64)
    gated = EnergyMatchingLoss(model, flow_weight_cutoff=0.5, **kw)
    terms = gated.training_losses(x1, x0=x0, generator=torch.Generator().manual_seed(0))
    t = torch.rand(64, generator=torch.Generator().manual_seed(0), dtype=F64)
    tb = t.reshape(-1, 1)
    per = (-0.5 * (tb * x1 + (1 - tb) * x0) - (x1 - x0)).square().mean(1)
    assert terms["flow_loss"].item() == pytest.approx(
        (compute_flow_weight(t, 0.5) * per).mean().item()
    )


def test_internal_langevin_reaches_the_right_temperature():
    """Data-started chains run at constant temperature eps_max: Var -> eps_max / a (1 + O(h))."""
    a, eps = 2.0, 0.15
    em = EnergyMatchingLoss(
        Quadratic(a=a),
        epsilon_max=eps,
        n_langevin_steps=600,
        langevin_dt=0.01,
        noise_fraction=0.0,
        dtype=F64,
    )
    x1 = torch.full((4000, 2), 3.0, dtype=F64)  # far from the minimum: chains must travel
    neg, _ = em.negative_samples(x1, None, {}, torch.Generator().manual_seed(0))
    var = neg.var(dim=0).mean().item()
    target = eps / a / (1 - a * 0.01 / 2)  # exact stationary variance of the EM chain
    assert abs(var - target) < 5 * target * math.sqrt(2 / 8000) + 0.002
    assert neg.mean().abs().item() < 0.02


def test_noise_started_chains_follow_the_temperature_ramp():
    """With tau_star = 0.99 the noise chains are deterministic gradient flow until the end."""
    a = 1.0
    em = EnergyMatchingLoss(
        Quadratic(a=a),
        epsilon_max=0.0,
        tau_star=0.5,
        n_langevin_steps=100,
        langevin_dt=0.01,
        noise_fraction=1.0,
        dtype=F64,
    )
    x0 = torch.randn(8, 2, dtype=F64)
    neg, _ = em.negative_samples(
        torch.zeros(8, 2, dtype=F64), x0, {}, torch.Generator().manual_seed(0)
    )
    # eps_max = 0: pure gradient descent from the (permuted) x0 rows: x * (1 - h a)^n
    shrink = (1 - 0.01 * a) ** 100
    assert torch.allclose(
        torch.sort(neg.norm(dim=1)).values, torch.sort(x0.norm(dim=1) * shrink).values
    )


def test_internal_langevin_keeps_float64_noise_amplitudes():
    """The per-row noise scales are made in the chains' dtype: float64 chains match a
    hand-written float64 Euler-Maruyama chain with the same draws to rounding (a float32
    noise scale gave 1e-8)."""
    a, b, n, h, eps, tau = 1.5, 8, 30, 0.01, 0.15, 0.8
    em = EnergyMatchingLoss(
        Quadratic(a=a), epsilon_max=eps, tau_star=tau, n_langevin_steps=n, langevin_dt=h
    )
    x1, x0 = torch.randn(b, 2, dtype=F64), torch.randn(b, 2, dtype=F64)
    neg, _ = em.negative_samples(x1, x0, {}, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    perm = torch.randperm(b, generator=g)
    x = torch.cat([x0[perm[: b // 2]], x1[torch.randperm(b, generator=g)[: b // 2]]])
    noise_rows = (torch.arange(b) < b // 2).unsqueeze(1)
    for k in range(n):
        s = k / n  # the ramp of TemperatureScheduler: 0 before tau, then linear to eps
        ramp = math.sqrt(eps * max(0.0, s - tau) / (1 - tau))
        scale = torch.where(noise_rows, torch.tensor(ramp, dtype=F64), math.sqrt(eps))
        x = x - h * a * x + math.sqrt(2 * h) * scale * torch.randn(x.shape, generator=g, dtype=F64)
    assert neg.dtype == F64
    torch.testing.assert_close(neg, x, rtol=1e-13, atol=1e-13)


def test_data_started_negatives_start_from_distinct_rows():
    # before: the rows were drawn with replacement (randint): 0.8.9 drew them without
    # (randperm), and a batch held duplicate negatives (P = 1 - 64!/(32! 64^32) ~ 1 here)
    em = EnergyMatchingLoss(Quadratic(a=1.0), n_langevin_steps=1, langevin_dt=1e-12,
                            epsilon_max=0.0, noise_fraction=0.5, dtype=F64)  # fmt: skip
    x1 = torch.arange(64, dtype=F64).unsqueeze(1).repeat(1, 2)  # row i holds (i, i)
    for seed in range(3):
        neg, _ = em.negative_samples(x1, None, {}, torch.Generator().manual_seed(seed))
        rows = neg[32:, 0].round()
        assert torch.allclose(neg[32:], x1[rows.long()], atol=1e-9)  # data rows, not moved
        assert rows.unique().numel() == 32

    # training_losses returns the negatives' own conditioning: grouped by the batch's y, the
    # reordered negatives were mislabelled (class means 0.2/0.4/0.3 for -2/0/3)
    class Labelled(Quadratic):
        def forward(self, x, y=None):
            return super().forward(x)

    em = EnergyMatchingLoss(Labelled(a=1.0), n_langevin_steps=1, langevin_dt=1e-12,
                            epsilon_max=0.0, noise_fraction=0.5, lambda_cd=1.0, dtype=F64,
                            coupling="independent", check_conditioning=False)  # fmt: skip
    y = torch.arange(64) // 2  # row i: label i // 2
    terms = em.training_losses(
        x1, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(0)
    )
    neg, neg_y = terms["negatives"], terms["negatives_model_kwargs"]["y"]
    assert torch.equal(neg[32:, 0].round().long() // 2, neg_y[32:])  # data-started rows


def test_contrastive_term_and_clamp():
    model = Quadratic(a=1.0)
    em = EnergyMatchingLoss(model, lambda_cd=2.0, n_langevin_steps=10, cd_clamp=None, dtype=F64)
    x1 = torch.randn(32, 2, dtype=F64)
    terms = em.training_losses(x1, generator=torch.Generator().manual_seed(0))
    neg = terms["negatives"]
    expected = model(x1).mean() - trimmed_mean(model(neg), 0.1)
    assert terms["cd_value"].item() == pytest.approx(expected.item())
    assert terms["cd_loss"].item() == pytest.approx(2.0 * expected.item())
    assert terms["loss"].item() == pytest.approx((terms["flow_loss"] + terms["cd_loss"]).item())
    clamped = EnergyMatchingLoss(
        model, lambda_cd=2.0, n_langevin_steps=10, cd_clamp=0.02, dtype=F64
    )
    far = torch.zeros(32, 2, dtype=F64)  # data at the minimum: cd_value < 0
    t2 = clamped.training_losses(far, generator=torch.Generator().manual_seed(0))
    assert t2["cd_value"] < -0.02 and t2["cd_loss"].item() == pytest.approx(-0.02)


def test_duck_typed_sampler_gets_temperature_and_is_restored():
    class Sampler:
        def __init__(self):
            self.scheds = {"noise_scale": ConstantScheduler(1.0)}
            self.calls = []

        def get_schedulers(self):
            return self.scheds

        def register_scheduler(self, name, s):
            self.scheds[name] = s

        def sample(self, x=None, n_steps=None, model_kwargs=None, generator=None):
            self.calls.append(
                (type(self.scheds["noise_scale"]).__name__, x.shape[0], n_steps, model_kwargs)
            )
            return x * 0.5

    s = Sampler()
    original = s.scheds["noise_scale"]
    em = EnergyMatchingLoss(
        Quadratic(), sampler=s, n_langevin_steps=7, noise_fraction=0.25, dtype=F64
    )

    class CondQuadratic(Quadratic):
        def forward(self, x, y=None):
            return super().forward(x) * (1 if y is None else y)

    em.model = CondQuadratic()
    x1 = torch.randn(8, 2, dtype=F64)
    y = torch.arange(8, dtype=F64)
    em(x1, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(0))
    assert [c[0] for c in s.calls] == ["TemperatureScheduler", "ConstantScheduler"]
    with pytest.raises(ValueError, match="either as y= or in model_kwargs, not both"):
        em(x1, y=y, model_kwargs={"y": y + 1})
    assert [c[1] for c in s.calls] == [2, 6] and all(c[2] == 7 for c in s.calls)
    assert all(c[3]["y"].shape[0] == n for c, n in zip(s.calls, (2, 6)))
    assert s.scheds["noise_scale"] is original


def test_no_negatives_during_warmup_and_schedules():
    calls = []

    class Sampler:
        def sample(self, **kw):
            calls.append(1)
            return kw["x"]

    em = EnergyMatchingLoss(
        Quadratic(), sampler=Sampler(), lambda_cd=LinearScheduler(0.0, 2.0, 2), dtype=F64
    )
    assert isinstance(em, BaseLoss)
    em(torch.randn(8, 2, dtype=F64))
    assert calls == []
    em.step_schedulers()
    em(torch.randn(8, 2, dtype=F64))
    assert calls == [1, 1]
    em.lambda_cd = 0.0
    assert em.lambda_cd == 0.0


def test_generator_determinism_and_global_rng():
    em = EnergyMatchingLoss(MLP(), n_langevin_steps=5)
    x = torch.randn(32, 2)
    state = torch.get_rng_state()
    a = em(x, generator=torch.Generator().manual_seed(1))
    b = em(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())


def test_validation():
    for kw, match in (
        (dict(noise_fraction=1.5), "noise_fraction"),
        (dict(cd_trim_fraction=1.0), "cd_trim_fraction"),
        (dict(cd_clamp=-1.0), "cd_clamp"),
        (dict(langevin_dt=0.0), "langevin_dt"),
        (dict(tau_star=1.0), "tau_star"),
        (dict(sigma=-0.1), "sigma"),
    ):
        with pytest.raises(ValueError, match=match):
            EnergyMatchingLoss(MLP(), **kw)
    for bad in ("x", False):  # named, not coerced by float()
        with pytest.raises(TypeError, match="tau_star must be a finite number"):
            EnergyMatchingLoss(MLP(), tau_star=bad)
    with pytest.raises(TypeError, match="sample"):
        EnergyMatchingLoss(MLP(), sampler=object())
    with pytest.raises(ValueError, match="x0"):
        EnergyMatchingLoss(MLP())(torch.randn(4, 2), x0=torch.randn(3, 2))


@pytest.mark.slow
def test_energy_matching_losses_decrease_on_2d_data():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    model = MLP()
    em = EnergyMatchingLoss(
        model, coupling="ot", lambda_cd=0.0, n_langevin_steps=20, langevin_dt=0.02
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    flows = []
    for it in range(180):
        x = centers[torch.randint(0, 2, (64,), generator=g)] + 0.2 * torch.randn(64, 2, generator=g)
        if it == 150:
            em.lambda_cd = 0.5  # equilibrium phase
        terms = em.training_losses(x, generator=g)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        flows.append(terms["flow_loss"].item())
    assert sum(flows[130:150]) / 20 < 0.6 * sum(flows[:20]) / 20
    # the learned potential is lower at the data than around it
    with torch.no_grad():
        e_data = model(centers).mean()
        e_off = model(torch.tensor([[0.0, 0.0], [0.0, 2.5], [0.0, -2.5]])).mean()
    assert e_data < e_off


@pytest.mark.skipif(
    not hasattr(nn.Module, "register_load_state_dict_pre_hook"), reason="needs torch >= 2.5"
)
def test_state_dict_of_0_8_9_loads_strictly():
    """torchebm 0.8.9 registered a LangevinDynamics for ``sampler=None``: its checkpoints hold
    ``sampler.model.*`` (a copy of ``model.*``) and the tableau ``sampler.integrator._buf_*``."""
    saved = EnergyMatchingLoss(MLP(), lambda_cd=0.0)
    old = dict(saved.state_dict())
    for key, value in saved.model.state_dict().items():
        old[f"sampler.model.{key}"] = value.clone()
    old["sampler.integrator._buf_a"] = torch.zeros(1, 1)
    old["sampler.integrator._buf_b"] = torch.ones(1)
    old["sampler.integrator._buf_c"] = torch.zeros(1)
    fresh = EnergyMatchingLoss(MLP(), lambda_cd=0.0)
    fresh.load_state_dict(old)  # strict
    for key, value in saved.model.state_dict().items():
        torch.testing.assert_close(fresh.model.state_dict()[key], value, rtol=0, atol=0)

    # a loss that has a sampler of its own keeps a strict check of those keys
    class Sampler:
        def sample(self, **kw):
            return kw["x"]

    own = EnergyMatchingLoss(MLP(), sampler=Sampler(), lambda_cd=0.0)
    with pytest.raises(RuntimeError, match="sampler.model"):
        own.load_state_dict(old)


def test_a_models_own_autograd_gradient_runs_in_the_langevin_chains():
    # the chains called it under torch.no_grad(): autograd's bare "element 0 of tensors does
    # not require grad" (the samplers' same failure was fixed; this loop kept it)
    from _support.own_gradient import AutogradQuadratic

    em = EnergyMatchingLoss(AutogradQuadratic(), lambda_cd=1.0, n_langevin_steps=3)
    loss = em(torch.randn(64, 2, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(loss)


def test_a_models_own_autograd_gradient_runs_under_inference_mode():
    from _support.own_gradient import AutogradQuadratic

    em = EnergyMatchingLoss(AutogradQuadratic(), lambda_cd=1.0, n_langevin_steps=3)
    with torch.inference_mode():
        loss = em(torch.randn(64, 2, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(loss)


def test_every_per_sample_conditioning_follows_the_permuted_chains():
    # before: only a tensor followed the chains' permutation; a list of prompts (or a numpy
    # array, a dict of them) kept the data's order, so chain i ran and was scored under
    # another sample's prompt (silently)
    import numpy as np

    b = 6
    x1 = torch.zeros(b, 2, dtype=F64)
    x1[:, 0] = torch.arange(1, b + 1, dtype=F64)  # data row i sits at its own label i + 1
    prompts = ["a" * (i + 1) for i in range(b)]  # len(prompt) is the row's label
    calls = []

    class Sampler:  # keeps its start points: chain i is the data row it started from
        def sample(self, x=None, n_steps=None, model_kwargs=None, generator=None):
            calls.append((x.clone(), model_kwargs))
            return x

    class Conditional(Quadratic):
        def forward(self, x, y=None, g=None, size=None):
            return super().forward(x)

    def labels(v):
        return [float(len(p)) for p in v] if isinstance(v, list) else np.asarray(v).tolist()

    for sampler in (None, Sampler()):
        em = EnergyMatchingLoss(Conditional(), sampler=sampler, n_langevin_steps=1,
                                langevin_dt=1e-12, epsilon_max=0.0, noise_fraction=0.0,
                                dtype=F64, check_conditioning=False)  # fmt: skip
        conditioning = {"y": prompts, "g": {"n": np.arange(1, b + 1)}, "size": (64, 32)}
        neg, neg_mk = em.negative_samples(x1, None, conditioning, torch.Generator().manual_seed(0))
        started = neg[:, 0].round().tolist()
        assert started != list(range(1, b + 1))  # the chains are permuted
        assert labels(neg_mk["y"]) == started
        assert labels(neg_mk["g"]["n"]) == started
        assert neg_mk["size"] == (64, 32)
    x, mk = calls[-1]  # the sampler ran under its chains' own conditioning
    assert labels(mk["y"]) == x[:, 0].round().tolist() == labels(mk["g"]["n"])
