"""``t_sampler``/``loss_weight_fn`` on EquilibriumMatchingLoss and EnergyMatchingLoss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _support.compiled_steps import Potential
from torch import nn

from torchebm.core.errors import ShapeError
from torchebm.flows import EnergyMatchingLoss, EquilibriumMatchingLoss


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 2)

    def forward(self, x, t):
        return self.net(x)


def test_eqm_lognormal_times_have_the_requested_logit_moments():
    torch.manual_seed(0)
    n, mu, s = 20_000, 0.5, 0.8
    eqm = EquilibriumMatchingLoss(Field(), t_sampler="lognormal", t_p_mean=mu, t_p_std=s)
    t = eqm.training_losses(torch.randn(n, 2), generator=torch.Generator().manual_seed(1))["t"]
    logit = torch.log(t / (1 - t)).double()
    assert abs(logit.mean().item() + mu) < 5 * s / math.sqrt(n)
    assert abs(logit.std().item() - s) < 5 * s / math.sqrt(2 * (n - 1))


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: EquilibriumMatchingLoss(Field(), **kw),
        lambda **kw: EnergyMatchingLoss(Potential(), lambda_cd=0.0, sigma=0.0, **kw),
    ],
)
def test_loss_weight_fn_and_callable_sampler(make):
    torch.manual_seed(0)
    x = torch.randn(64, 2)

    def at(value):
        return lambda b, *, device, dtype, generator: torch.full((b,), value, dtype=dtype)

    plain = make(t_sampler=at(0.3))
    weighted = make(t_sampler=at(0.3), loss_weight_fn=lambda t: 1.0 + t)
    weighted.load_state_dict(plain.state_dict())
    a = plain(x, generator=torch.Generator().manual_seed(2))
    b = weighted(x, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(b, 1.3 * a)
    with pytest.raises(ValueError, match="t_sampler"):
        make(t_sampler="beta")
    with pytest.raises(TypeError, match="loss_weight_fn"):
        make(loss_weight_fn=3)


@pytest.mark.parametrize(
    ("ct", "want"),
    [
        ("truncated", lambda t: torch.clamp((1 - t) / (1 - 0.8), max=1.0)),
        ("linear", lambda t: 1 - t),
        ("constant", lambda t: torch.ones_like(t)),
        (lambda t: t**2, lambda t: t**2),
    ],
)
def test_eqm_ct_families_scale_the_target(ct, want):
    torch.manual_seed(0)
    eqm = EquilibriumMatchingLoss(Field(), ct=ct, ct_multiplier=2.0, t_sampler="lognormal")
    x1 = torch.randn(32, 2)
    terms = eqm.training_losses(x1, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(x1.shape, generator=g)  # the same noise draw as inside
    ut = x1 - x0  # linear interpolant velocity
    expected = -2.0 * want(terms["t"])[:, None] * ut
    torch.testing.assert_close(terms["target"], expected)


def test_eqm_callable_ct_may_return_one_value_for_the_batch_on_images():
    # a 0-d c(t) scales every sample: target = -2 * 0.5 * u_t, per sample, on (B, C, H, W)
    eqm = EquilibriumMatchingLoss(
        lambda x, t: 0.5 * x, ct=lambda t: torch.tensor(0.5), ct_multiplier=2.0
    )
    x1 = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(3))
    terms = eqm.training_losses(x1, generator=torch.Generator().manual_seed(4))
    x0 = torch.randn(x1.shape, generator=torch.Generator().manual_seed(4))
    for i in range(4):
        torch.testing.assert_close(terms["target"][i], -(x1[i] - x0[i]))


@pytest.mark.parametrize(
    ("ct", "got"),
    [
        (lambda t: 1.0, "float"),
        (lambda t: t[:, None, None][:2], r"\(2, 1, 1\)"),
        (lambda t: np.ones(()), "ndarray"),  # a () shape, not a tensor: failed in expand
    ],
)
def test_eqm_callable_ct_of_another_shape_is_a_named_shape_error(ct, got):
    eqm = EquilibriumMatchingLoss(Field(), ct=ct)
    with pytest.raises(ShapeError, match=rf"ct\(t\) must return a tensor of shape.*got {got}"):
        eqm(torch.randn(4, 2))


def test_eqm_callable_ct_per_sample_as_a_column_is_the_same_as_a_vector():
    # (B, 1) is one value per sample too (0.8.9 code may return it): same target as (B,)
    x1 = torch.randn(4, 2)
    targets = []
    for ct in (lambda t: 1.0 - t, lambda t: (1.0 - t)[:, None]):
        eqm = EquilibriumMatchingLoss(Field(), ct=ct)
        targets.append(
            eqm.training_losses(x1, generator=torch.Generator().manual_seed(4))["target"]
        )
    torch.testing.assert_close(targets[1], targets[0], rtol=0, atol=0)


def test_eqm_model_time_is_the_deprecated_time_invariant():
    with pytest.warns(DeprecationWarning, match="model_time"):
        assert EquilibriumMatchingLoss(Field(), model_time="true").time_invariant is False
    assert EquilibriumMatchingLoss(Field(), model_time="zero").time_invariant is True
    with pytest.raises(ValueError, match="model_time"):
        EquilibriumMatchingLoss(Field(), model_time="half")
    with pytest.raises(ValueError, match="ct"):
        EquilibriumMatchingLoss(Field(), ct="cosine")


class LabelField(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 2)
        self.seen = []

    def forward(self, x, t, y=None):
        self.seen.append(y.clone())
        return x + self.emb(y)


class LabelPotential(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 2)

    def forward(self, x, y=None):
        return ((x - self.emb(y)) ** 2).sum(-1)


def test_eqm_y_keyword_and_label_dropout():
    import warnings

    n, p = 4000, 0.3
    field = LabelField()
    eqm = EquilibriumMatchingLoss(field, cfg_dropout=p, null_condition=4)
    y = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # y= is not a bare kwarg
        eqm(torch.randn(n, 2), y=y, generator=torch.Generator().manual_seed(1))
    frac = (field.seen[-1] == 4).double().mean().item()
    assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_check_conditioning_on_eqm_and_energy_matching():
    from torchebm.core.errors import ConfigurationError

    class Ignores(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x, t, y=None):
            return self.lin(x)

    y = torch.tensor([0, 1, 2, 3])
    with pytest.raises(ConfigurationError, match="ignores its conditioning"):
        EquilibriumMatchingLoss(Ignores())(torch.randn(4, 2), y=y)

    class IgnoresE(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, x, y=None):
            return self.lin(x).squeeze(-1)

    with pytest.raises(ConfigurationError, match="ignores its conditioning"):
        EnergyMatchingLoss(IgnoresE(), lambda_cd=0.0)(torch.randn(4, 2), y=y)
    EnergyMatchingLoss(LabelPotential(), lambda_cd=0.0, coupling="independent")(
        torch.randn(4, 2), y=y
    )


def test_callable_sampler_times_respect_train_eps():
    # train_eps is the documented margin: times lie in [eps, 1 - eps] for every t_sampler.
    # A callable's times touching 0 and 1 were used as they came (t = 0, 1 with eps = 0.1).
    def ends(b, *, device, dtype, generator):
        return torch.tensor([0.0, 1.0, 0.05, 0.5] * (b // 4), dtype=dtype, device=device)

    eqm = EquilibriumMatchingLoss(Field(), t_sampler=ends, train_eps=0.1)
    t = eqm.training_losses(torch.randn(8, 2), generator=torch.Generator().manual_seed(0))["t"]
    torch.testing.assert_close(t, torch.tensor([0.1, 0.9, 0.1, 0.5] * 2), rtol=0, atol=0)
    # eps = 0: the callable's times exactly as returned
    eqm0 = EquilibriumMatchingLoss(Field(), t_sampler=ends)
    t0 = eqm0.training_losses(torch.randn(8, 2), generator=torch.Generator().manual_seed(0))["t"]
    torch.testing.assert_close(t0, torch.tensor([0.0, 1.0, 0.05, 0.5] * 2), rtol=0, atol=0)


@pytest.mark.parametrize("eps", [0.2, 0.0])
def test_energy_matching_train_eps_bounds_the_flow_times_as_0_8_9_did(eps):
    # 0.8.9 took train_eps (through **kwargs) and drew t in [eps, 1 - eps]; this version
    # refused the keyword (and a 0.8.9 pickle with it drew t over [1e-4, 1 - 1e-4])
    seen = []

    def weight(t):
        seen.append(t.detach().clone())
        return torch.ones_like(t)

    em = EnergyMatchingLoss(Potential(), lambda_cd=0.0, loss_weight_fn=weight, train_eps=eps)
    em(torch.randn(4000, 2), generator=torch.Generator().manual_seed(3))
    t = torch.cat(seen)
    # uniform on [eps, 1 - eps]: min and max within 1e-2 of the ends (4,000 draws: P(miss) ~ e^-67)
    assert eps <= float(t.min()) < eps + 1e-2 and 1 - eps - 1e-2 < float(t.max()) <= 1 - eps
    with pytest.raises(ValueError, match="train_eps"):
        EnergyMatchingLoss(Potential(), train_eps=0.5)


NOISE = {"prediction": "noise", "time_invariant": False}


@pytest.mark.parametrize(
    "base, ignored, named, acting",
    [
        ({}, {"loss_weight": "velocity"}, "loss_weight='velocity'", {**NOISE, "train_eps": 1e-3}),
        (NOISE, {"ct": "linear"}, "ct, ct_multiplier", {}),
        (NOISE, {"ct_multiplier": 9.0}, "ct_multiplier", {}),
        ({"ct": "constant"}, {"ct_threshold": 0.3}, "ct_threshold=0.3", {"ct": "truncated"}),
        ({}, {"dispersion_weight": 3.0}, "dispersion_weight", None),
        ({}, {"t_p_mean": 2.0}, "t_p_mean=2.0", {"t_sampler": "lognormal"}),
    ],
)
def test_an_option_that_the_other_choices_ignore_is_reported(base, ignored, named, acting):
    # each option was accepted and changed nothing (the loss equal to the last digit), so a
    # user who set a weight on the default velocity objective trained unweighted unknowingly
    import re
    import warnings

    x, g = torch.randn(64, 2), torch.Generator()
    torch.manual_seed(0)
    plain = EquilibriumMatchingLoss(Field(), **base)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=re.escape(named)):
        loss = EquilibriumMatchingLoss(Field(), **base, **ignored)
    assert loss(x, generator=g.manual_seed(1)) == plain(x, generator=g.manual_seed(1))
    if acting is not None:  # where the option acts, it is not reported
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            EquilibriumMatchingLoss(Field(), **acting, **ignored)


@pytest.mark.parametrize("weight", ["velocity", "likelihood"])
def test_a_diffusion_weight_without_a_time_margin_is_reported(weight):
    # (B_v / sigma)^2 is (1/t + 1)^2 on the linear path, 1e8 at t = 1e-4: with train_eps=0
    # one batch loss in 100 reached 1,400x their median; SiT sets train_eps=1e-3 for these
    import warnings

    with pytest.warns(UserWarning, match=rf"loss_weight='{weight}' with train_eps=0"):
        EquilibriumMatchingLoss(Field(), loss_weight=weight, **NOISE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EquilibriumMatchingLoss(Field(), loss_weight=weight, train_eps=1e-3, **NOISE)
