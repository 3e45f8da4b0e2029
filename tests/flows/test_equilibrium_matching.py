"""EquilibriumMatchingLoss: exact minimiser, energy parameterisations, options, training."""

import pytest
import torch
from torch import nn

from torchebm.core import BaseLoss, LinearScheduler
from torchebm.core.errors import ConfigurationError
from torchebm.couplings import UnbalancedSinkhornCoupling
from torchebm.flows import EquilibriumMatchingLoss, compute_eqm_ct, dispersive_loss
from torchebm.interpolants import LinearInterpolant

F64 = torch.float64


class ExactGaussianField(nn.Module):
    """f*(x, t) = -c(t) E[u | x_t = x] for 1-D data N(m, s^2) and the linear path."""

    def __init__(self, m, s, shift=0.0, slope=0.0):
        super().__init__()
        self.m, self.s, self.shift, self.slope = m, s, shift, slope

    def forward(self, x, t):
        tb = t.reshape(-1, 1)
        var = tb.square() * self.s**2 + (1 - tb).square()
        score = -(x - tb * self.m) / var
        v = LinearInterpolant().score_to_velocity(score, x, t)
        return -compute_eqm_ct(tb) * v + self.shift + self.slope * x


def _loss(model, x1, seed):
    eqm = EquilibriumMatchingLoss(model, time_invariant=False, dtype=F64)
    return eqm(x1, generator=torch.Generator().manual_seed(seed)).item()


def test_exact_target_field_is_the_minimum():
    g = torch.Generator().manual_seed(0)
    m, s = 1.5, 0.5
    x1 = m + s * torch.randn(100_000, 1, dtype=F64, generator=g)
    best = _loss(ExactGaussianField(m, s), x1, seed=1)
    for shift, slope in ((0.3, 0.0), (-0.3, 0.0), (0.0, 0.3), (0.0, -0.3)):
        worse = _loss(ExactGaussianField(m, s, shift, slope), x1, seed=1)
        assert worse > best + 0.03, (shift, slope, best, worse)


def test_delta_data_exact_field_has_zero_loss():
    mu = torch.tensor([[1.0, -2.0]], dtype=F64)

    class Exact(nn.Module):
        def forward(self, x, t):
            tb = t.reshape(-1, 1)
            return -compute_eqm_ct(tb) * (mu - x) / (1 - tb)

    loss = EquilibriumMatchingLoss(Exact(), time_invariant=False, train_eps=0.01, dtype=F64)
    assert loss(mu.expand(256, 2), generator=torch.Generator().manual_seed(0)).item() < 1e-20


def test_target_points_from_data_to_noise_with_ct():
    class Zero(nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x)

    eqm = EquilibriumMatchingLoss(Zero(), dtype=F64)
    x1 = torch.randn(64, 2, dtype=F64)
    x0 = torch.randn(64, 2, dtype=F64)
    terms = eqm.training_losses(x1, x0=x0, generator=torch.Generator().manual_seed(0))
    ct = compute_eqm_ct(terms["t"]).reshape(-1, 1)
    assert torch.allclose(terms["target"], ct * (x0 - x1))
    assert torch.allclose(terms["loss"], (ct * (x0 - x1)).square().mean(1))


@pytest.mark.parametrize("energy_type", ["dot", "mean", "l2"])
def test_explicit_energy_gradient_field(energy_type):
    torch.manual_seed(0)
    lin = nn.Linear(3, 3, bias=False).double()

    class Field(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x, t):
            return self.lin(x)

    eqm = EquilibriumMatchingLoss(Field(), energy_type=energy_type, dtype=F64)
    x1 = torch.randn(16, 3, dtype=F64)
    terms = eqm.training_losses(x1, generator=torch.Generator().manual_seed(1))
    w = lin.weight.detach()
    xt = LinearInterpolant().interpolate(
        torch.randn(16, 3, dtype=F64, generator=torch.Generator().manual_seed(1)), x1, terms["t"]
    )[0]
    if energy_type == "l2":
        expected = -(xt @ w.T) @ w  # grad of -1/2 |W x|^2
        energy = -0.5 * (xt @ w.T).square().sum(1)
    else:
        expected = xt @ (w + w.T).T  # grad of x . W x
        energy = (xt * (xt @ w.T)).sum(1)
    assert torch.allclose(terms["pred"], expected, atol=1e-10)
    assert torch.allclose(terms["energy"], energy, atol=1e-10)
    # training through grad_x g reaches the parameters
    eqm(x1).backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    # with autograd off (a validation pass) the field is still grad_x g, not f itself
    with torch.no_grad():
        frozen = eqm.training_losses(x1, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(frozen["pred"], expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(frozen["loss"], terms["loss"].detach(), atol=1e-12, rtol=0)
    assert not frozen["loss"].requires_grad and not frozen["energy"].requires_grad


def test_noise_and_score_predictions_with_weights():
    class Const(nn.Module):
        def forward(self, x, t):
            return torch.full_like(x, 0.3)

    x1 = torch.randn(32, 2, dtype=F64)
    x0 = torch.randn(32, 2, dtype=F64)
    interp = LinearInterpolant()
    for pred, weight in (("noise", None), ("score", "velocity"), ("score", "likelihood")):
        eqm = EquilibriumMatchingLoss(
            Const(), prediction=pred, loss_weight=weight, time_invariant=False, dtype=F64
        )
        terms = eqm.training_losses(x1, x0=x0, generator=torch.Generator().manual_seed(0))
        t = terms["t"].reshape(-1, 1)
        sigma = 1 - t
        _, bv = interp.compute_drift(x1, terms["t"])
        w = (
            1.0
            if weight is None
            else ((bv / sigma) ** 2 if weight == "velocity" else bv / sigma**2)
        )
        manual = (
            (w * (0.3 - x0) ** 2).mean(1)
            if pred == "noise"
            else (w * (0.3 * sigma + x0) ** 2).mean(1)
        )
        assert torch.allclose(terms["loss"], manual)
    with pytest.warns(UserWarning, match="time_invariant"):
        EquilibriumMatchingLoss(Const(), prediction="noise")


def test_coupling_weights_weight_the_mean():
    class Field(nn.Module):
        def forward(self, x, t):
            return 0.1 * x

    coupling = UnbalancedSinkhornCoupling(reg_marginal=0.1)
    eqm = EquilibriumMatchingLoss(Field(), coupling=coupling, dtype=F64)
    x1 = torch.randn(64, 2, dtype=F64)
    x1[0] = 20.0
    terms = eqm.training_losses(x1, generator=torch.Generator().manual_seed(0))
    w = terms["weights"]
    assert w is not None and w.std() > 0
    expected = (w * terms["loss"]).sum() / w.sum()
    assert eqm(x1, generator=torch.Generator().manual_seed(0)).item() == pytest.approx(
        expected.item()
    )


def test_dispersion_term_and_time_invariance():
    seen = []

    class WithActs(nn.Module):
        def forward(self, x, t):
            seen.append(t.clone())
            return torch.zeros_like(x), [x * 2.0]

    x1 = torch.randn(16, 2, dtype=F64)
    base = EquilibriumMatchingLoss(WithActs(), dtype=F64)
    disp = EquilibriumMatchingLoss(
        WithActs(), apply_dispersion=True, dispersion_weight=0.5, dtype=F64
    )
    t_a = base.training_losses(x1, generator=torch.Generator().manual_seed(0))
    t_b = disp.training_losses(x1, generator=torch.Generator().manual_seed(0))
    xt = LinearInterpolant().interpolate(
        torch.randn(16, 2, dtype=F64, generator=torch.Generator().manual_seed(0)), x1, t_a["t"]
    )[0]
    assert torch.allclose(t_b["loss"] - t_a["loss"], 0.5 * dispersive_loss(2 * xt).expand(16))
    assert all(torch.equal(t, torch.zeros_like(t)) for t in seen)  # time-invariant model input


@pytest.mark.parametrize("acts", [None, []])
def test_dispersion_without_activations_is_an_error_not_ignored(acts):
    # apply_dispersion=True on a model returning a bare field (or no activation) gave the
    # plain EqM loss, equal to apply_dispersion=False whatever dispersion_weight
    class Field(nn.Module):
        def forward(self, x, t):
            return 0.1 * x if acts is None else (0.1 * x, acts)

    eqm = EquilibriumMatchingLoss(Field(), apply_dispersion=True, dispersion_weight=10.0)
    with pytest.raises(ConfigurationError, match="apply_dispersion=True needs a model"):
        eqm(torch.randn(8, 2))
    assert torch.isfinite(EquilibriumMatchingLoss(Field())(torch.randn(8, 2)))


def test_generator_determinism_global_rng_and_schedules():
    class Field(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x, t):
            return self.lin(x)

    eqm = EquilibriumMatchingLoss(
        Field(), coupling="sinkhorn", train_eps=LinearScheduler(0.1, 0.0, 10)
    )
    assert isinstance(eqm, BaseLoss) and eqm.train_eps == pytest.approx(0.1)
    x = torch.randn(32, 2)
    state = torch.get_rng_state()
    a = eqm(x, generator=torch.Generator().manual_seed(3))
    b = eqm(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())
    terms = eqm.training_losses(x, generator=torch.Generator().manual_seed(3))
    assert terms["t"].min() >= 0.1 and terms["t"].max() <= 0.9
    eqm.step_schedulers()
    assert eqm.train_eps == pytest.approx(0.09)


def test_conditioning_and_validation():
    class Cond(nn.Module):
        def forward(self, x, t, y):
            return x * y.reshape(-1, 1)

    eqm = EquilibriumMatchingLoss(Cond())
    x = torch.randn(8, 2)
    assert torch.isfinite(eqm(x, model_kwargs={"y": torch.ones(8)}))
    # y= is torchebm 0.8.9's shorthand for model_kwargs={"y": y}: no deprecation
    a = eqm(x, y=torch.ones(8), generator=torch.Generator().manual_seed(0))
    b = eqm(x, model_kwargs={"y": torch.ones(8)}, generator=torch.Generator().manual_seed(0))
    assert a.item() == b.item()
    # y in both places is ambiguous: an error, as in 0.8.9 (neither value silently wins)
    with pytest.raises(ValueError, match="either as y= or in model_kwargs, not both"):
        eqm(x, y=torch.ones(8), model_kwargs={"y": torch.zeros(8)})
    with pytest.raises(ValueError, match=r"y must have one entry per sample of x \(batch 8\)"):
        eqm(x, y=torch.ones(5))
    with pytest.raises(ValueError, match="x0"):
        eqm(x, x0=torch.randn(4, 2), model_kwargs={"y": torch.ones(8)})
    with pytest.raises(ValueError, match="prediction"):
        EquilibriumMatchingLoss(Cond(), prediction="x1")
    with pytest.raises(ValueError, match="energy_type"):
        EquilibriumMatchingLoss(Cond(), energy_type="quadratic")
    with pytest.raises(ValueError, match="train_eps"):
        EquilibriumMatchingLoss(Cond(), train_eps=0.7)
    with pytest.raises(TypeError, match="requires a BaseInterpolant"):
        EquilibriumMatchingLoss(Cond(), interpolant=3)
    with pytest.raises(ValueError, match="Unknown coupling"):
        EquilibriumMatchingLoss(Cond(), coupling="bogus")


def _mixture(n, g):
    centers = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    return centers[torch.randint(0, 2, (n,), generator=g)] + 0.2 * torch.randn(n, 2, generator=g)


def test_eqm_loss_decreases_and_descent_reaches_the_data():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2)
            )

        def forward(self, x, t):
            return self.net(x)

    model = MLP()
    eqm = EquilibriumMatchingLoss(model)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        loss = eqm(_mixture(128, g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.75 * first, (first, last)  # E|target|^2 down to the conditional variance
    # gradient descent on the learned equilibrium field moves noise onto the two modes
    x = torch.randn(512, 2, generator=g)
    with torch.no_grad():
        for _ in range(100):
            x = x - 0.05 * model(x, torch.zeros(512))
    d = torch.cdist(x, torch.tensor([[-2.0, 0.0], [2.0, 0.0]]))
    dist, mode = d.min(dim=1)
    print(
        "median distance to a mode",
        dist.median().item(),
        "mode balance",
        mode.float().mean().item(),
    )
    assert dist.median() < 0.8  # N(0, I) starts at a median distance of about 1.9
    assert 0.2 < mode.float().mean() < 0.8  # both modes are reached
