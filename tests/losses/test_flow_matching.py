"""FlowMatchingLoss: closed-form loss values, the time samplers' laws, label dropout, and a
small 2-D flow that must beat a Gaussian fit on energy distance."""

from __future__ import annotations

import math

import pytest
import torch
from _support.flow_objectives import LinearField, check_batch_loss
from torch import nn

from torchebm.core.errors import ConfigurationError, NonFiniteError, ShapeError
from torchebm.flows import TimeSampler
from torchebm.losses import EquilibriumMatchingLoss, FlowMatchingLoss


class Velocity(nn.Module):
    def __init__(self, dim=2, hidden=64, num_classes=None):
        super().__init__()
        self.emb = nn.Embedding(num_classes, 8) if num_classes else None
        extra = 8 if num_classes else 0
        self.net = nn.Sequential(
            nn.Linear(dim + 1 + extra, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, x, t, y=None):
        h = [x, t[:, None].to(x.dtype)]
        if self.emb is not None:
            h.append(self.emb(y))
        return self.net(torch.cat(h, dim=1))


class Zero(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, **kw):
        return torch.zeros_like(x) + 0 * self.p


def _const_t(value):
    def sampler(batch, *, device, dtype, generator):
        return torch.full((batch,), value, device=device, dtype=dtype)

    return sampler


def test_loss_is_the_closed_form_for_a_zero_model():
    g = torch.Generator().manual_seed(0)
    x1, x0 = torch.randn(128, 3, generator=g), torch.randn(128, 3, generator=g)
    # linear interpolant: u_t = x1 - x0 for every t, so the loss is mean |x1 - x0|^2 / d
    want = ((x1 - x0) ** 2).mean()
    fm = FlowMatchingLoss(Zero(), t_sampler=_const_t(0.3))
    torch.testing.assert_close(fm(x1, x0=x0), want)
    # the weight w(t) = 1 + t multiplies every sample
    fm_w = FlowMatchingLoss(Zero(), t_sampler=_const_t(0.3), loss_weight_fn=lambda t: 1 + t)
    torch.testing.assert_close(fm_w(x1, x0=x0), 1.3 * want)


def test_negate_velocity_flips_the_target():
    g = torch.Generator().manual_seed(1)
    x1, x0 = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)

    class Exact(nn.Module):  # returns -u_t exactly (x0 and x1 fixed by the test)
        def forward(self, x, t):
            return x0 - x1

    assert FlowMatchingLoss(Exact(), negate_velocity=True)(x1, x0=x0).item() == 0.0
    torch.testing.assert_close(FlowMatchingLoss(Exact())(x1, x0=x0), (4 * (x1 - x0) ** 2).mean())


def test_generator_makes_the_loss_reproducible():
    model, x = Velocity(), torch.randn(32, 2)
    fm = FlowMatchingLoss(model, t_sampler="lognormal")
    a = fm(x, generator=torch.Generator().manual_seed(5))
    b = fm(x, generator=torch.Generator().manual_seed(5))
    c = fm(x, generator=torch.Generator().manual_seed(6))
    assert a.item() == b.item() != c.item()


def test_lognormal_times_have_the_requested_logit_moments():
    n, mu, s = 40_000, -0.8, 0.7
    t = TimeSampler("lognormal", t_p_mean=mu, t_p_std=s)(
        n, 0.0, device="cpu", dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    logit = torch.log(t / (1 - t))
    # logit t = -(mu + s z): mean -mu, std s; 5 standard errors
    assert abs(logit.mean().item() - (-mu)) < 5 * s / math.sqrt(n)
    assert abs(logit.std().item() - s) < 5 * s / math.sqrt(2 * (n - 1))


def test_uniform_times_respect_train_eps_and_have_uniform_moments():
    n, eps = 40_000, 0.1
    t = TimeSampler("uniform")(
        n, eps, device="cpu", dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    assert t.min() >= eps and t.max() <= 1 - eps
    var = (1 - 2 * eps) ** 2 / 12
    assert abs(t.mean().item() - 0.5) < 5 * math.sqrt(var / n)
    assert abs(t.var().item() - var) < 0.05 * var


def test_bad_options_are_reported():
    with pytest.raises(ValueError, match="t_sampler"):
        FlowMatchingLoss(Zero(), t_sampler="beta")
    with pytest.raises(ValueError, match="t_p_std"):
        FlowMatchingLoss(Zero(), t_p_std=0.0)
    with pytest.raises(TypeError, match="loss_weight_fn"):
        FlowMatchingLoss(Zero(), loss_weight_fn=2.0)
    with pytest.raises(ValueError, match="train_eps"):
        FlowMatchingLoss(Zero(), train_eps=0.5)
    with pytest.raises(ValueError, match="null_condition"):
        FlowMatchingLoss(Zero(), cfg_dropout=0.1)
    with pytest.raises(ShapeError, match="shape"):
        FlowMatchingLoss(Zero(), t_sampler=lambda b, **kw: torch.zeros(b + 1))(torch.randn(4, 2))
    with pytest.raises(ValueError, match="x0"):
        FlowMatchingLoss(Zero())(torch.randn(4, 2), x0=torch.randn(4, 3))


def test_nan_is_reported_not_masked():
    class Nan(nn.Module):
        def forward(self, x, t):
            return torch.full_like(x, float("nan"))

    with pytest.raises(NonFiniteError, match="non-finite"):
        FlowMatchingLoss(Nan())(torch.randn(8, 2))


def test_cfg_dropout_nulls_the_requested_fraction():
    seen = []

    class Spy(Velocity):
        def forward(self, x, t, y=None):
            seen.append(y.clone())
            return super().forward(x, t, y)

    n, p, null = 20_000, 0.25, 3
    fm = FlowMatchingLoss(
        Spy(num_classes=4), cfg_dropout=p, null_condition=null, check_conditioning=False
    )
    y = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(0))
    fm(torch.randn(n, 2), y=y, generator=torch.Generator().manual_seed(1))
    frac = (seen[-1] == null).double().mean().item()
    assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n)
    kept = seen[-1] != null
    assert torch.equal(seen[-1][kept], y[kept])
    fm.eval()  # no dropout outside training
    fm(torch.randn(n, 2), y=y)
    assert torch.equal(seen[-1], y)


def test_check_conditioning_catches_a_model_that_ignores_y():
    class Ignores(Velocity):
        def forward(self, x, t, y=None):
            return super().forward(x, t)

    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ConfigurationError, match="ignores its conditioning"):
        FlowMatchingLoss(Ignores())(torch.randn(4, 2), y=y)
    FlowMatchingLoss(Ignores(), check_conditioning=False)(torch.randn(4, 2), y=y)
    FlowMatchingLoss(Velocity(num_classes=3))(torch.randn(4, 2), y=y)
    with pytest.raises(ConfigurationError, match="either as y= or in model_kwargs, not both"):
        FlowMatchingLoss(Velocity(num_classes=3))(torch.randn(4, 2), y=y, model_kwargs={"y": y})


def _energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Szekely's energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistics)."""
    return (
        2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()
    ).item()


def _two_moons_like(n, generator):
    """Two separated Gaussian blobs on a circle arc: far from a single Gaussian."""
    k = torch.randint(0, 2, (n,), generator=generator)
    centers = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    return centers[k] + 0.35 * torch.randn(n, 2, generator=generator)


def test_trained_flow_beats_the_gaussian_fit_on_energy_distance():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = Velocity(hidden=64)
    fm = FlowMatchingLoss(model)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(600):
        loss = fm(_two_moons_like(256, g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    n = 1500
    test = _two_moons_like(n, g)
    with torch.no_grad():
        x = torch.randn(n, 2, generator=g)
        steps = 100
        for i in range(steps):  # Euler from noise (t=0) to data (t=1)
            t = torch.full((n,), i / steps)
            x = x + model(x, t) / steps
    train = _two_moons_like(4000, g)
    mean, cov = train.mean(0), torch.cov(train.T)
    gauss = torch.distributions.MultivariateNormal(mean, cov).sample((n,))
    ed_flow, ed_gauss = _energy_distance(x, test), _energy_distance(gauss, test)
    assert ed_flow < 0.5 * ed_gauss, (ed_flow, ed_gauss)


@pytest.mark.parametrize("weighted", [False, True])
def test_batch_loss_is_the_mean_of_the_per_sample_losses(weighted):
    torch.manual_seed(0)
    weight = (lambda t: 1.0 + t) if weighted else None
    loss_fn = FlowMatchingLoss(LinearField(3), loss_weight_fn=weight, dtype=torch.float64)
    check_batch_loss(loss_fn, weighted)


class ScaledField(nn.Module):
    """``f(x, t, scale) = scale * x + t`` (float64): conditioning read through a keyword."""

    def forward(self, x, t, scale=None):
        s = 1.0 if scale is None else scale.reshape(-1, 1)
        return s * x + t.reshape(-1, 1).to(x.dtype)


def _flow_objectives():
    from torchebm.flows import EquilibriumMatchingLoss

    return {
        "fm": FlowMatchingLoss(ScaledField(), dtype=torch.float64),
        "eqm": EquilibriumMatchingLoss(ScaledField(), dtype=torch.float64),
    }


@pytest.mark.parametrize("name", ["fm", "eqm"])
def test_bare_keyword_conditioning_is_deprecated_and_equals_model_kwargs(name):
    # torchebm 0.8.9's forward took bare keyword conditioning (**kwargs); the flow
    # objectives share one forward that still accepts it, with one DeprecationWarning
    loss_fn = _flow_objectives()[name]
    x = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    scale = torch.linspace(0.5, 2.0, 32, dtype=torch.float64)
    want = loss_fn(x, model_kwargs={"scale": scale}, generator=torch.Generator().manual_seed(1))
    with pytest.warns(DeprecationWarning, match="model_kwargs"):
        got = loss_fn(x, scale=scale, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # and the conditioning changes the loss (it is not dropped on the way)
    plain = loss_fn(x, generator=torch.Generator().manual_seed(1))
    assert abs(float(plain) - float(want)) > 1e-3


def test_flow_matching_probes_the_conditioning_at_half_time():
    seen = []

    class Recording(nn.Module):
        def forward(self, x, t, y=None):
            seen.append((x.shape[0], float(t[0])))
            return x * (1.0 if y is None else (1 + y.reshape(-1, 1).to(x.dtype)))

    loss_fn = FlowMatchingLoss(Recording())
    loss_fn(torch.randn(8, 2), model_kwargs={"y": torch.arange(8) % 3})
    assert (1, 0.5) in seen  # one sample at t = 1/2, with and without y


@pytest.mark.parametrize("objective", ["fm", "eqm", "em"])
@pytest.mark.parametrize("coupling", ["ot", "sinkhorn", "greedy", "unbalanced_sinkhorn"])
def test_labels_stay_with_their_data_rows_when_the_coupling_reorders_x1(objective, coupling):
    # at t = 1 the model sees x1 itself: row i of the data (first coordinate 10 i) has label
    # i, and every call the model gets must pair a row with its own label
    from torchebm.flows import EnergyMatchingLoss, EquilibriumMatchingLoss

    calls = []

    class Recording(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(8, 2)

        def forward(self, x, *args, y):
            calls.append(((x[:, 0].detach() / 10).round().long(), y))
            out = x + self.emb(y)
            return out if objective != "em" else out.square().sum(1)

    def at_one(n, *, device, dtype, generator):
        return torch.ones(n, device=device, dtype=dtype)

    y = torch.arange(8)
    x1 = torch.stack([10.0 * y, torch.zeros(8)], 1)
    options = dict(coupling=coupling, t_sampler=at_one, check_conditioning=False)
    loss_fn = {
        "fm": lambda: FlowMatchingLoss(Recording(), **options),
        "eqm": lambda: EquilibriumMatchingLoss(Recording(), **options),
        "em": lambda: EnergyMatchingLoss(Recording(), sigma=0.0, lambda_cd=0.0, **options),
    }[objective]()
    from torchebm.core._module import _WARNED

    _WARNED.discard("paired_conditioning")
    # aligned, but biased: each class gets the noise rows nearest its data (two classes
    # trained with OT sampled sd 2.3 for 0.3), so the re-pairing across labels warns
    with pytest.warns(RuntimeWarning, match=r"re-pairs noise and data .* \['y'\]"):
        loss_fn(x1, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(0))
    assert calls
    for rows, labels in calls:
        assert torch.equal(rows, labels), (rows, labels)


@pytest.mark.parametrize("objective", ["fm", "eqm"])
@pytest.mark.parametrize("form", ["list", "userdict", "numpy", "nested", "group"])
def test_per_sample_conditioning_that_is_not_a_tensor_follows_its_rows(objective, form):
    # a list of labels or prompts, a numpy array, a dict or a (y, scale) group reached the
    # model in the data's original order while the coupling re-paired x1: each row was
    # trained on another row's label, with no warning
    import warnings

    from torchebm.couplings import ExactOTCoupling

    labels = list(range(8))
    if form == "numpy":
        np = pytest.importorskip("numpy")
        given, read = np.arange(8), lambda c: [int(v) for v in c]
    elif form == "nested":
        given, read = {"label": labels}, lambda c: c["label"]
    elif form == "group":
        given, read = (labels, 2.0), lambda c: c[0]
    elif form == "userdict":  # a Mapping that is not a dict (a tokenizer's BatchEncoding)
        from collections import UserDict

        given, read = UserDict(label=labels, scale=2.0), lambda c: c["label"]
    else:
        given, read = labels, list
    calls = []

    class Recording(nn.Module):
        def forward(self, x, t, y):
            calls.append(((x[:, 0].detach() / 10).round().long().tolist(), read(y)))
            return x.clone()

    def at_one(n, *, device, dtype, generator):
        return torch.ones(n, device=device, dtype=dtype)

    x1 = torch.stack([10.0 * torch.arange(8.0), torch.zeros(8)], 1)
    x0 = x1.flip(0) + 0.01  # the exact OT pairing reverses the rows
    make = FlowMatchingLoss if objective == "fm" else EquilibriumMatchingLoss
    loss_fn = make(
        Recording(), coupling=ExactOTCoupling(), t_sampler=at_one, check_conditioning=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the re-pairing warning (tested above)
        loss_fn(x1, x0=x0, model_kwargs={"y": given})
    assert calls and all(rows == list(seen) for rows, seen in calls), calls
    assert calls[0][0] == labels[::-1]  # the coupling did reorder: the check can fail


@pytest.mark.parametrize("batch", [2, 3])
def test_tuples_and_other_values_that_are_not_per_sample_stay_as_given(batch):
    # a tuple the length of the batch (a hyper-parameter such as an image size, a
    # torch.Size) is not one value per sample: at B = 2 it was reordered, (64, 32) -> (32, 32)
    from torchebm.couplings import ExactOTCoupling
    from torchebm.flows._utils import paired_conditioning

    kwargs = {"size": (64, 32), "shape": torch.Size([3, 7]), "scale": 0.5, "name": "x"}
    out = paired_conditioning(kwargs, torch.tensor([1, 1] + [0] * (batch - 2)), batch)
    assert out == kwargs and type(out["shape"]) is torch.Size
    seen = []

    class Field(nn.Module):
        def forward(self, x, t, size, group):
            seen.append((size, group[0].tolist(), group[1].tolist()))
            return x.clone()

    x1 = torch.arange(2.0 * batch).reshape(batch, 2)
    group = (torch.arange(batch), torch.arange(batch) * 10)  # a group of per-sample tensors
    loss_fn = FlowMatchingLoss(Field(), coupling=ExactOTCoupling(), check_conditioning=False)
    loss_fn(x1, x0=x1.flip(0), model_kwargs={"size": (64, 32), "group": group})
    order = list(range(batch))[::-1]
    assert seen and all(s == ((64, 32), order, [10 * i for i in order]) for s in seen), seen


def test_a_list_of_per_sample_tensors_the_length_of_the_batch_is_refused_by_name():
    # one tensor per sample, or a group of per-sample tensors? with a re-pairing coupling
    # the two need different orders, so the loss asks for an unambiguous form
    from torchebm.couplings import ExactOTCoupling

    class Field(nn.Module):
        def forward(self, x, t, y):
            return x.clone()

    x1 = torch.randn(2, 2)
    loss_fn = FlowMatchingLoss(Field(), coupling=ExactOTCoupling(), check_conditioning=False)
    ambiguous = [torch.zeros(2, 3), torch.ones(2, 3)]
    with pytest.raises(ConfigurationError, match=r"'y' is a list of 2 tensors or arrays .* tuple"):
        loss_fn(x1, x0=x1.flip(0), model_kwargs={"y": ambiguous})
    np = pytest.importorskip("numpy")
    with pytest.raises(ConfigurationError, match=r"'y' is a list of 2 tensors or arrays"):
        loss_fn(x1, x0=x1.flip(0), model_kwargs={"y": [np.zeros((2, 3)), np.ones((2, 3))]})


@pytest.mark.parametrize("make", ["fm", "eqm"])
@pytest.mark.parametrize("width", [1, 4])
def test_a_model_output_not_shaped_like_x_is_refused(make, width):
    # a (B, 1) output broadcast against the (B, 2) target and trained on garbage (FM loss
    # 0.84, EqM 9.09, no error); a (B, 4) one gave a raw broadcasting error
    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, width)

        def forward(self, x, t):
            return self.lin(x)

    loss_fn = (FlowMatchingLoss if make == "fm" else EquilibriumMatchingLoss)(Field())
    with pytest.raises(ShapeError, match=rf"shaped like x \(8, 2\), got \(8, {width}\)"):
        loss_fn(torch.randn(8, 2))


def test_a_class_aware_coupling_does_not_warn_about_conditioning():
    # a cost that keeps pairs within a label (the documented conditioning channel of
    # compute_cost) re-pairs nothing across labels: the warning was a false alarm there
    import warnings

    from torchebm.core._module import _WARNED
    from torchebm.couplings import ExactOTCoupling

    class WithinClass(ExactOTCoupling):
        def compute_cost(self, x0, x1, y=None, **kwargs):
            cost = super().compute_cost(x0, x1)
            return cost + 1e3 * (y[:, None] != y[None, :]).to(cost.dtype)

    class Field(nn.Module):
        def forward(self, x, t, y):
            return x * (1 + y[:, None].to(x.dtype))

    _WARNED.discard("paired_conditioning")
    loss_fn = FlowMatchingLoss(Field(), coupling=WithinClass(), check_conditioning=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss_fn(torch.randn(16, 2), model_kwargs={"y": torch.arange(16) % 2})
