"""Score-matching family: closed forms, unbiasedness, learned curvatures, options, errors."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from _support.losses import MLPEnergy
from torch import nn

from torchebm.core import BaseModel, DoubleWellModel, GaussianModel, LinearScheduler
from torchebm.core.errors import NonFiniteError
from torchebm.losses import DenoisingScoreMatching, ScoreMatching, SlicedScoreMatching

A = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.5]])


class DiagQuadratic(BaseModel):
    r"""``E = 1/2 sum_i w_i x_i^2`` with learnable curvatures (init 0.3)."""

    def __init__(self, dim=2, w=0.3):
        super().__init__()
        self.w = nn.Parameter(torch.full((dim,), float(w)))

    def forward(self, x):
        return 0.5 * (self.w * x.pow(2)).sum(-1)


class LabelQuadratic(BaseModel):
    r"""Conditional ``E(x, y) = 1/2 w_y |x|^2``."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5, 2.0]))

    def forward(self, x, y):
        return 0.5 * self.w[y] * x.pow(2).sum(-1)


def gaussian_model():
    return GaussianModel(torch.zeros(3), torch.linalg.inv(A))


def sm_closed_form(x):
    # E = 1/2 x^T A x: grad = A x, Laplacian = tr(A)
    return (0.5 * (x @ A).pow(2).sum(1) - A.trace()).mean()


def gen(seed):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- closed forms
def test_exact_sm_equals_gaussian_closed_form():
    x = torch.randn(64, 3, generator=gen(0))
    loss = ScoreMatching(gaussian_model())(x)
    torch.testing.assert_close(loss, sm_closed_form(x), rtol=1e-5, atol=1e-5)


def test_exact_sm_double_well_closed_form():
    h, b = 0.7, 1.2
    x = torch.randn(50, 2, generator=gen(1))
    loss = ScoreMatching(DoubleWellModel(barrier_height=h, b=b))(x)
    grad = 4 * h * x * (x**2 - b**2)
    lap = (4 * h * (3 * x**2 - b**2)).sum(1)
    torch.testing.assert_close(loss, (0.5 * grad.pow(2).sum(1) - lap).mean(), rtol=1e-5, atol=1e-5)


def test_exact_sm_image_shaped_input_uses_whole_event():
    # (B, 2, 3) input: the trace runs over all 6 coordinates
    w = torch.linspace(0.5, 2.0, 6)

    class Img(BaseModel):
        def forward(self, x):
            return 0.5 * (w * x.reshape(x.shape[0], -1).pow(2)).sum(1)

    x = torch.randn(8, 2, 3, generator=gen(2))
    expected = (0.5 * (w * x.reshape(8, -1)).pow(2).sum(1) - w.sum()).mean()
    torch.testing.assert_close(ScoreMatching(Img())(x), expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- unbiasedness
def _estimates(make, x, n_seeds=300):
    loss_fn = make()
    return torch.tensor([loss_fn(x, generator=gen(s)).item() for s in range(n_seeds)])


@pytest.mark.parametrize(
    "make",
    [
        lambda: ScoreMatching(gaussian_model(), hessian_method="hutchinson"),
        lambda: ScoreMatching(gaussian_model(), hessian_method="approx"),
        lambda: SlicedScoreMatching(gaussian_model(), n_projections=1),
        lambda: SlicedScoreMatching(gaussian_model(), n_projections=1, projection_type="gaussian"),
        lambda: SlicedScoreMatching(gaussian_model(), n_projections=1, projection_type="sphere"),
        lambda: SlicedScoreMatching(gaussian_model(), n_projections=1, variance_reduction=True),
    ],
    ids=["hutchinson", "approx", "ssm-rademacher", "ssm-gaussian", "ssm-sphere", "ssm-vr"],
)
def test_stochastic_estimators_are_unbiased(make):
    x = torch.randn(16, 3, generator=gen(3))
    exact = sm_closed_form(x).item()
    est = _estimates(make, x)
    assert est.std() > 1e-3  # really stochastic
    se = est.std().item() / math.sqrt(len(est))
    assert abs(est.mean().item() - exact) < 4 * se, (est.mean().item(), exact, se)


def test_hutchinson_samples_reduce_variance():
    x = torch.randn(16, 3, generator=gen(4))
    one = _estimates(lambda: ScoreMatching(gaussian_model(), hessian_method="hutchinson"), x, 200)
    many = _estimates(
        lambda: ScoreMatching(gaussian_model(), hessian_method="hutchinson", hutchinson_samples=16),
        x,
        200,
    )
    # Var scales like 1/M: std ratio ~ 1/4
    assert many.std() < 0.4 * one.std()


def test_approx_matches_hutchinson_on_same_probes():
    # central finite differences are exact on quadratics and O(eps^2) on the quartic double well
    x = torch.randn(32, 2, generator=gen(5))
    model = DoubleWellModel(barrier_height=0.5)
    for seed in range(3):
        h = ScoreMatching(model, hessian_method="hutchinson")(x, generator=gen(seed))
        a = ScoreMatching(model, hessian_method="approx")(x, generator=gen(seed))
        torch.testing.assert_close(a, h, rtol=2e-3, atol=2e-3)


# --------------------------------------------------------------------------- learned curvature
STD = torch.tensor([0.7, 1.5])


def train_curvature(make_loss, steps=400, sigma=0.0):
    torch.manual_seed(0)
    model = DiagQuadratic(2)
    loss_fn = make_loss(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    g = gen(7)
    tail = []
    for i in range(steps):
        x = torch.randn(256, 2, generator=g) * STD
        loss = loss_fn(x, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= steps - 150:
            tail.append(model.w.detach().clone())
    return torch.stack(tail).mean(0)  # Polyak average of the last iterates


@pytest.mark.parametrize(
    "make",
    [
        lambda m: ScoreMatching(m),
        lambda m: ScoreMatching(m, hessian_method="hutchinson", hutchinson_samples=2),
        lambda m: ScoreMatching(m, hessian_method="approx"),
        lambda m: SlicedScoreMatching(m, n_projections=2),
    ],
    ids=["exact", "hutchinson", "approx", "sliced"],
)
def test_score_matching_learns_data_curvature(make):
    # data N(0, diag(STD^2)): the score-matching optimum is w_i = 1 / STD_i^2 (not 1/(D STD^2):
    # the 'approx' method no longer divides its trace by D, API.md BUG 2)
    w = train_curvature(make)
    torch.testing.assert_close(w, 1 / STD**2, rtol=0.08, atol=0.0)


def test_dsm_learns_smoothed_curvature_with_correct_sign():
    sigma = 0.5
    w = train_curvature(lambda m: DenoisingScoreMatching(m, noise_scale=sigma))
    # optimum is the score of N(0, STD^2 + sigma^2); the sign bug (API.md BUG 1) gave w < 0
    assert (w > 0).all()
    torch.testing.assert_close(w, 1 / (STD**2 + sigma**2), rtol=0.08, atol=0.0)


def test_dsm_objective_minimiser_exact():
    # for fixed noise the DSM loss is quadratic in w; its minimiser over a large batch is
    # E[x~ . xi/sigma] / E[x~^2] = 1/(s^2 + sigma^2) per dimension
    sigma = 0.3
    x = torch.randn(40000, 2, generator=gen(8)) * STD
    vals = []
    for w in (0.2, 0.6, 1.0):
        model = DiagQuadratic(2, w)
        vals.append(DenoisingScoreMatching(model, noise_scale=sigma)(x, generator=gen(9)))
    # vals are quadratic in (shared) w: fit a parabola through the three points
    (a, b, _c) = torch.linalg.solve(
        torch.tensor([[0.04, 0.2, 1.0], [0.36, 0.6, 1.0], [1.0, 1.0, 1.0]]), torch.stack(vals)
    )
    w_star = -b / (2 * a)
    target = 2 / (STD**2 + sigma**2).sum()
    torch.testing.assert_close(w_star, target, rtol=0.02, atol=0.0)


# --------------------------------------------------------------------------- options
def test_dsm_sigma_alias_warns_and_maps():
    model = DiagQuadratic()
    with pytest.warns(DeprecationWarning, match="noise_scale"):
        dsm = DenoisingScoreMatching(model=model, sigma=0.1)
    assert dsm.noise_scale == pytest.approx(0.1) and dsm.sigma == pytest.approx(0.1)
    with pytest.raises(ValueError, match="sigma"):
        DenoisingScoreMatching(model, noise_scale=0.2, sigma=0.1)


def test_noise_scale_scheduler_is_used():
    model = DiagQuadratic()
    dsm = DenoisingScoreMatching(model, noise_scale=LinearScheduler(1.0, 0.5, 1))
    x = torch.randn(8, 2, generator=gen(0))
    first = dsm(x, generator=gen(1))
    dsm.step_schedulers()
    assert dsm.noise_scale == 0.5
    second = dsm(x, generator=gen(1))
    assert not torch.allclose(first, second)


def test_regularization_default_and_custom():
    model = MLPEnergy(2, 8)
    x = torch.randn(16, 2, generator=gen(0))
    base = DenoisingScoreMatching(model, noise_scale=0.1)(x, generator=gen(1))
    reg = DenoisingScoreMatching(model, noise_scale=0.1, regularization_strength=0.5)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xg).sum(), xg)
    torch.testing.assert_close(
        reg(x, generator=gen(1)), base + 0.5 * g.pow(2).sum(1).mean(), rtol=1e-5, atol=1e-5
    )
    seen = {}

    def custom(xx, m):
        seen["args"] = (xx, m)
        return m(xx).pow(2).mean()

    c = SlicedScoreMatching(model, regularization_strength=2.0, custom_regularization=custom)
    c0 = SlicedScoreMatching(model)
    out = c(x, generator=gen(2)) - c0(x, generator=gen(2))
    torch.testing.assert_close(out, 2.0 * model(x).pow(2).mean(), rtol=1e-4, atol=1e-5)
    assert seen["args"][1] is model
    with pytest.raises(ValueError, match="regularization_strength"):
        ScoreMatching(model, regularization_strength=-1.0)


def test_functional_path_matches_autograd():
    model = MLPEnergy(3, 16)
    x = torch.randn(16, 3, generator=gen(0))
    for make in (
        lambda ua: ScoreMatching(model, use_autograd=ua),
        lambda ua: SlicedScoreMatching(model, use_autograd=ua),
        lambda ua: DenoisingScoreMatching(model, noise_scale=0.1, use_autograd=ua),
    ):
        grads = []
        for ua in (True, False):
            model.zero_grad()
            loss = make(ua)(x, generator=gen(3))
            loss.backward()
            grads.append((loss.detach(), [p.grad.clone() for p in model.net[:-1].parameters()]))
        torch.testing.assert_close(grads[0][0], grads[1][0])
        for a, b in zip(grads[0][1], grads[1][1]):
            torch.testing.assert_close(a, b)


def test_conditioning_reaches_the_model():
    model = LabelQuadratic()
    x = torch.randn(6, 2, generator=gen(0))
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    w = model.w.detach()[y]
    # exact SM with conditioning: per-sample 1/2 w^2 |x|^2 - 2 w
    expected = (0.5 * w**2 * x.pow(2).sum(1) - 2 * w).mean()
    torch.testing.assert_close(
        ScoreMatching(model)(x, model_kwargs={"y": y}), expected, rtol=1e-5, atol=1e-6
    )
    for loss_fn in (
        SlicedScoreMatching(model, n_projections=3),
        ScoreMatching(model, hessian_method="approx", hutchinson_samples=2),
        DenoisingScoreMatching(model, noise_scale=0.2),
    ):
        assert torch.isfinite(loss_fn(x, model_kwargs={"y": y}, generator=gen(1)))
    with pytest.warns(DeprecationWarning, match="model_kwargs"):
        bare = ScoreMatching(model)(x, y=y)
    torch.testing.assert_close(bare, expected, rtol=1e-5, atol=1e-6)


def test_generator_determinism_and_global_rng_untouched():
    model = MLPEnergy(2, 8)
    x = torch.randn(16, 2, generator=gen(0))
    for loss_fn in (
        SlicedScoreMatching(model),
        DenoisingScoreMatching(model),
        ScoreMatching(model, hessian_method="hutchinson"),
    ):
        state = torch.get_rng_state()
        a = loss_fn(x, generator=gen(5))
        b = loss_fn(x, generator=gen(5))
        assert torch.equal(torch.get_rng_state(), state)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert not torch.equal(a, loss_fn(x, generator=gen(6)))


def test_dtype_follows_model():
    model = MLPEnergy(2, 8).double()
    x = torch.randn(8, 2)  # float32 input is cast to the model's dtype
    for loss_fn in (
        ScoreMatching(model),
        SlicedScoreMatching(model),
        DenoisingScoreMatching(model),
    ):
        assert loss_fn(x).dtype == torch.float64


# --------------------------------------------------------------------------- errors
def test_bad_constructor_arguments():
    model = DiagQuadratic()
    with pytest.raises(ValueError, match="hessian_method"):
        ScoreMatching(model, hessian_method="magic")
    with pytest.raises(ValueError, match="hutchinson_samples"):
        ScoreMatching(model, hutchinson_samples=0)
    with pytest.raises(ValueError, match="projection_type"):
        SlicedScoreMatching(model, projection_type="cauchy")
    with pytest.raises(ValueError, match="n_projections"):
        SlicedScoreMatching(model, n_projections=0)
    with pytest.raises(ValueError, match="noise_scale"):
        DenoisingScoreMatching(model, noise_scale=0.0)
    with pytest.raises(TypeError, match="energy model"):
        DenoisingScoreMatching(None)
    with pytest.raises(ValueError, match="nan_policy"):
        DenoisingScoreMatching(model, nan_policy="silence")


@pytest.mark.parametrize("cls", [ScoreMatching, SlicedScoreMatching, DenoisingScoreMatching])
def test_bad_inputs(cls):
    loss_fn = cls(DiagQuadratic())
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        loss_fn([[0.0, 1.0]])
    with pytest.raises(TypeError, match="floating-point"):
        loss_fn(torch.ones(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        loss_fn(torch.ones(4))
    with pytest.raises(ValueError, match="non-empty batch"):
        loss_fn(torch.ones(0, 2))

    class BadShape(BaseModel):  # (B, 2); a (B, 1) result is taken, deprecated, as 0.8.9
        def forward(self, x):  # took it (test_score_matching_column_energies.py)
            return x.square()

    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        cls(BadShape())(torch.ones(4, 2))


@pytest.mark.parametrize("cls", [ScoreMatching, SlicedScoreMatching, DenoisingScoreMatching])
def test_non_finite_loss_is_reported(cls):
    x = torch.ones(4, 2)  # finite data; the NaN comes from the model (a NaN curvature)
    nan_model = lambda: DiagQuadratic(w=float("nan"))  # noqa: E731
    with pytest.raises(NonFiniteError, match="non-finite"):
        cls(nan_model())(x)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        out = cls(nan_model(), nan_policy="warn")(x)
    assert torch.isnan(out)  # never replaced by a constant
    deferred = cls(nan_model(), nan_policy="deferred")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.isnan(deferred(x))
    with pytest.raises(NonFiniteError, match="call 1"):
        deferred(torch.ones(4, 2))


@pytest.mark.parametrize("cls", [ScoreMatching, SlicedScoreMatching, DenoisingScoreMatching])
@pytest.mark.parametrize("policy", ["raise", "warn"])
def test_non_finite_input_is_named(cls, policy):
    """NaN in the data raises naming ``x`` and its row (was: "produced a non-finite loss")."""
    x = torch.ones(4, 2)
    x[1, 0] = float("nan")
    with pytest.raises(
        NonFiniteError, match=r"x contains NaN or inf values at batch indices \[1\]"
    ):
        cls(DiagQuadratic(), nan_policy=policy)(x)


@pytest.mark.parametrize("loss_cls", [ScoreMatching, SlicedScoreMatching, DenoisingScoreMatching])
def test_a_functional_model_under_use_autograd_is_said_to_have_no_effect(loss_cls):
    # it was stored and ignored: ScoreMatching(a, functional_model=b)(x) == ScoreMatching(a)(x)
    torch.manual_seed(0)
    a, b = MLPEnergy(2).double(), MLPEnergy(2).double()
    x = torch.randn(32, 2, dtype=torch.float64)
    with pytest.warns(UserWarning, match="functional_model is used only with use_autograd=False"):
        loss_cls(a, functional_model=b)
    with pytest.warns(UserWarning, match="shares no trainable parameter with model"):
        functional = ScoreMatching(a, functional_model=b, use_autograd=False, dtype=torch.float64)
    assert torch.allclose(functional(x), ScoreMatching(b, dtype=torch.float64)(x))


def test_a_functional_model_without_the_models_parameters_is_warned_about():
    # the gradients went to functional_model's own parameters: an optimizer over the model's
    # got none (5 trainer steps, no weight moved), in silence
    torch.manual_seed(0)
    model = MLPEnergy(2, 8).double()
    x = torch.randn(16, 2, dtype=torch.float64)

    class Wrapper(nn.Module):  # holds the model's parameters: the intended use
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, z):
            return self.inner(z)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shared = ScoreMatching(
            model, functional_model=Wrapper(model), use_autograd=False, dtype=torch.float64
        )
    shared(x).backward()
    assert all(p.grad is not None for p in model.net[0].parameters())
    with pytest.warns(UserWarning, match="an optimizer over model.parameters"):
        ScoreMatching(
            model, functional_model=copy.deepcopy(model), use_autograd=False, dtype=torch.float64
        )
