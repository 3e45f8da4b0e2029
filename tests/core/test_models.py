"""Analytic energies: closed forms, closed-form gradients equal autograd, 1-D inputs, errors."""

import math

import pytest
import torch
from torch import nn

from torchebm.core import (
    AckleyModel,
    BaseModel,
    DoubleWellModel,
    GaussianModel,
    HarmonicModel,
    RastriginModel,
    RosenbrockModel,
)
from torchebm.core.errors import ConfigurationError, ShapeError

torch.manual_seed(0)

COV = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=torch.float64)
MODELS = [
    lambda: GaussianModel(torch.tensor([0.5, -1.0]), COV, dtype=torch.float64),
    lambda: DoubleWellModel(barrier_height=3.0, b=1.5, dtype=torch.float64),
    lambda: HarmonicModel(k=2.5, dtype=torch.float64),
    lambda: RastriginModel(a=7.0, dtype=torch.float64),
    lambda: AckleyModel(dtype=torch.float64),
    lambda: RosenbrockModel(a=1.0, b=5.0, dtype=torch.float64),
]


def autograd_grad(model, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).sum(), x)
    return g


@pytest.mark.parametrize("make", MODELS)
def test_closed_form_gradient_equals_autograd(make):
    model = make()
    x = torch.randn(16, 2, dtype=torch.float64) * 1.5
    g = model.gradient(x)
    assert g.shape == x.shape and g.dtype == x.dtype
    torch.testing.assert_close(g, autograd_grad(model, x), rtol=1e-9, atol=1e-9)
    # BaseModel's generic autograd path gives the same answer
    torch.testing.assert_close(BaseModel.gradient(model, x), g, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("make", MODELS)
def test_one_dimensional_input_is_one_sample(make):
    model = make()
    x = torch.tensor([0.3, -0.7], dtype=torch.float64)
    e = model(x)
    assert e.shape == (1,)
    g = model.gradient(x)
    assert g.shape == (2,)
    torch.testing.assert_close(g, model.gradient(x.unsqueeze(0))[0])


@pytest.mark.parametrize("make", MODELS)
def test_an_empty_batch_has_no_energies(make):
    model = make()
    x = torch.zeros(0, 2, dtype=torch.float64)
    assert model(x).shape == (0,)
    assert model.gradient(x).shape == (0, 2)


def test_gaussian_moves_x_to_its_device():
    # torchebm 0.8.9 moved x to the model's device, as BaseModel.gradient does; the meta
    # device stands in for a GPU (any other device than x's)
    model = GaussianModel(torch.zeros(2), torch.eye(2), device="meta")
    x = torch.ones(3, 2)
    assert model(x).device.type == "meta" and model(x).shape == (3,)
    assert model.gradient(x).device.type == "meta" and model.gradient(x).shape == (3, 2)


def test_energy_values_closed_form():
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    g = GaussianModel(torch.zeros(2), COV, dtype=torch.float64)
    expected = 0.5 * x[0] @ torch.linalg.inv(COV) @ x[0]
    assert g(x).item() == pytest.approx(expected.item(), rel=1e-12)
    assert DoubleWellModel(2.0, 1.0)(torch.tensor([[0.0, 1.0]])).item() == pytest.approx(2.0)
    assert HarmonicModel(2.0)(torch.tensor([[1.0, 2.0]])).item() == pytest.approx(5.0)
    assert RastriginModel()(torch.zeros(1, 3)).item() == pytest.approx(0.0, abs=1e-6)
    assert AckleyModel()(torch.zeros(1, 2)).item() == pytest.approx(0.0, abs=1e-5)
    assert RosenbrockModel()(torch.ones(1, 4)).item() == pytest.approx(0.0)
    assert RosenbrockModel(a=1.0, b=100.0)(torch.tensor([[0.0, 1.0]])).item() == pytest.approx(
        101.0
    )
    # Ackley's gradient at its minimum is defined (0), not NaN
    assert torch.equal(AckleyModel().gradient(torch.zeros(2, 3)), torch.zeros(2, 3))


def test_gaussian_validation():
    with pytest.raises(ValueError, match="mean"):
        GaussianModel(torch.zeros(2, 1), torch.eye(2))
    with pytest.raises(ValueError, match="cov"):
        GaussianModel(torch.zeros(2), torch.eye(3)[:2])
    with pytest.raises(ValueError, match="differ"):
        GaussianModel(torch.zeros(3), torch.eye(2))
    with pytest.raises(ValueError, match="positive definite"):
        GaussianModel(torch.zeros(2), torch.tensor([[1.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ShapeError, match=r"\(B, 2\)"):
        GaussianModel(torch.zeros(2), torch.eye(2))(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="last axis"):
        RosenbrockModel()(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="barrier_height"):
        DoubleWellModel(barrier_height=-1.0)


NAN, INF = float("nan"), float("inf")
EYE = torch.eye(2)
#: (id, constructor, error type, words the message must contain)
BAD_PARAMETERS = [
    ("gaussian mean nan", lambda: GaussianModel(torch.tensor([NAN, 0.0]), EYE), "mean", "nan"),
    ("gaussian mean inf", lambda: GaussianModel(torch.tensor([0.0, -INF]), EYE), "mean", "inf"),
    (
        "gaussian cov nan",
        lambda: GaussianModel(torch.zeros(2), torch.tensor([[1.0, NAN], [NAN, 1.0]])),
        "cov",
        "nan",
    ),
    (
        "gaussian cov not symmetric",
        lambda: GaussianModel(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]])),
        "cov must be symmetric",
        "0.5",
    ),
    (
        "gaussian cov indefinite",
        lambda: GaussianModel(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]])),
        "cov must be positive definite",
        "2.",
    ),
    (
        "gaussian cov negative",
        lambda: GaussianModel(torch.zeros(2), -EYE),
        "cov must be positive definite",
        "-1.",
    ),
    ("double well height 0", lambda: DoubleWellModel(barrier_height=0.0), "barrier_height", "0"),
    ("double well b nan", lambda: DoubleWellModel(b=NAN), "b must be finite", "nan"),
    ("harmonic k -1", lambda: HarmonicModel(k=-1.0), "k must be positive", "-1"),
    ("harmonic k inf", lambda: HarmonicModel(k=INF), "k must be positive", "inf"),
    ("rastrigin a 0", lambda: RastriginModel(a=0.0), "a must be positive", "0"),
    ("rastrigin a nan", lambda: RastriginModel(a=NAN), "a must be positive", "nan"),
    ("ackley a -1", lambda: AckleyModel(a=-1.0), "a must be positive", "-1"),
    ("ackley b 0", lambda: AckleyModel(b=0.0), "b must be positive", "0"),
    ("ackley c inf", lambda: AckleyModel(c=INF), "c must be positive", "inf"),
    ("rosenbrock a nan", lambda: RosenbrockModel(a=NAN), "a must be finite", "nan"),
    ("rosenbrock b -1", lambda: RosenbrockModel(b=-1.0), "b must be positive", "-1"),
]


@pytest.mark.parametrize("make,words", [pytest.param(m, w, id=i) for i, m, *w in BAD_PARAMETERS])
def test_analytic_models_reject_bad_parameters(make, words):
    """NaN/inf values, non-positive scales and non-PD covariances fail at construction."""
    with pytest.raises(ConfigurationError) as info:
        make()
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


@pytest.mark.parametrize(
    "make",
    [
        lambda: RastriginModel(a="x"),
        lambda: AckleyModel(b="x"),
        lambda: RosenbrockModel(a="x"),
        lambda: DoubleWellModel(b=True),
        lambda: HarmonicModel(k=None),
    ],
)
def test_analytic_models_reject_non_numbers(make):
    with pytest.raises(TypeError, match="must be a"):
        make()


def test_valid_edge_parameters_are_accepted():
    """Signs that are not scales stay free: a minimum at negative b or a."""
    assert DoubleWellModel(b=-1.0)(torch.tensor([[-1.0]])).item() == 0.0
    assert DoubleWellModel(b=0.0)(torch.tensor([[1.0]])).item() == pytest.approx(2.0)
    assert RosenbrockModel(a=-2.0)(torch.tensor([[-2.0, 4.0]])).item() == 0.0
    g = GaussianModel(torch.tensor([1, 2]), torch.tensor([[2, 0], [0, 2]]))  # integer inputs
    assert g(torch.tensor([[1.0, 2.0]])).item() == 0.0


def test_gaussian_follows_module_to():
    g = GaussianModel(torch.zeros(2), torch.eye(2)).to(torch.float64)
    assert g.mean.dtype == torch.float64 and g.dtype == torch.float64


class MLP(BaseModel):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x, scale=1.0):
        return scale * self.net(x).squeeze(-1)


def test_base_gradient_autograd_conditioning_and_no_param_grad():
    m = MLP()
    x = torch.randn(5, 2)
    g = m.gradient(x)
    torch.testing.assert_close(g, autograd_grad(m, x))
    torch.testing.assert_close(m.gradient(x, model_kwargs={"scale": 2.0}), 2 * g)
    assert all(p.grad is None for p in m.parameters())
    assert not g.requires_grad


def test_base_gradient_errors():
    class WrongShape(BaseModel):
        def forward(self, x):
            return x

    class Constant(BaseModel):
        def forward(self, x):
            return torch.zeros(x.shape[0])

    with pytest.raises(ShapeError, match=r"shape \(B,\)"):
        WrongShape().gradient(torch.zeros(3, 2))
    with pytest.raises(RuntimeError, match="differentiabl"):
        Constant().gradient(torch.zeros(3, 2))
    with pytest.raises(TypeError):
        BaseModel()


def test_double_well_minima_and_barrier():
    m = DoubleWellModel(barrier_height=2.0, b=1.0)
    assert m(torch.tensor([[1.0], [-1.0]])).tolist() == [0.0, 0.0]
    assert m(torch.tensor([[0.0]])).item() == pytest.approx(2.0)
    assert math.isclose(m.gradient(torch.tensor([[1.0]])).item(), 0.0)


def test_gradient_runs_hooks_and_compiled_calls_when_set():
    """gradient() calls the module: its hooks and a compiled call (module.compile()) run."""

    class Quad(BaseModel):
        def forward(self, x):
            return (x**2).sum(-1)

    m = Quad()
    x = torch.randn(5, 3)
    torch.testing.assert_close(m.gradient(x), 2 * x)
    seen = []
    handle = m.register_forward_hook(lambda mod, i, o: seen.append(o.shape))
    torch.testing.assert_close(m.gradient(x), 2 * x)
    assert seen == [torch.Size([5])]
    handle.remove()
    calls = []

    def backend(gm, example_inputs):  # a torch.compile backend that records its use
        calls.append(1)
        return gm.forward

    m.compile(backend=backend)
    torch.testing.assert_close(m.gradient(x), 2 * x)
    assert calls  # the compiled call ran


def test_analytic_subclass_redefining_forward_gets_the_autograd_gradient():
    """A closed form matches its own energy only: a redefined forward is differentiated."""
    from torchebm.core import BaseModel, GaussianModel

    class Tilted(GaussianModel):
        def forward(self, x):
            return super().forward(x) + 10.0 * x.square().sum(-1)

    m = Tilted(
        torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64), dtype=torch.float64
    )
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = 21.0 * x  # (Sigma^-1 + 20 I) x
    torch.testing.assert_close(m.gradient(x), ref)
    torch.testing.assert_close(m.gradient_function()(x), ref)
    torch.testing.assert_close(BaseModel.gradient(m, x), ref)
    # the plain model's function is the closed form, with no autograd pass through forward
    plain = GaussianModel(torch.tensor([1.0, -2.0]), torch.tensor([[2.0, 0.5], [0.5, 1.0]]))
    fn = plain.gradient_function()
    plain.forward = None  # an autograd pass would call it
    want = (x - plain.mean.double()) @ torch.linalg.inv(plain.cov.double())
    torch.testing.assert_close(fn(x.float()), want.float(), rtol=1e-5, atol=1e-6)
    # a float64 input (off the fast path) takes the checked closed form, cast back
    got = fn(x)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: GaussianModel(torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.5], [0.5, 2.0]])),
        lambda: DoubleWellModel(),
        lambda: HarmonicModel(2.0),
        lambda: RosenbrockModel(),
    ],
)
def test_analytic_models_expose_their_closed_forms_as_public_hooks(make):
    """`closed_form_energy`/`closed_form_gradient` on a batch are what `forward`/`gradient`
    return, and the gradient is the autograd gradient of the energy (float64)."""
    m = make().double()
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m.closed_form_energy(x), m(x))
    assert torch.equal(m.closed_form_gradient(x), m.gradient(x))
    xg = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(m.closed_form_energy(xg).sum(), xg)
    torch.testing.assert_close(m.closed_form_gradient(x), auto, rtol=1e-12, atol=1e-12)


def test_gaussian_model_keeps_its_own_copy_of_mean_and_cov():
    # the buffers shared the caller's storage: models built in a loop over one mean tensor
    # all ended with the last mean, and an in-place change of cov moved .cov but not the
    # precision computed at construction (energy 6.5 at [0, 2] for a reported cov of 4 I)
    mean, cov = torch.zeros(2), torch.eye(2)
    models = []
    for mu in (1.0, 2.0, 3.0):
        mean[0] = mu
        models.append(GaussianModel(mean, cov))
    assert [m.mean[0].item() for m in models] == [1.0, 2.0, 3.0]
    cov.mul_(4.0)
    assert torch.equal(models[0].cov, torch.eye(2))
    assert models[0](torch.tensor([[1.0, 2.0]])).item() == pytest.approx(2.0)


def test_gaussian_model_takes_read_only_numpy_moments_without_torchs_warning():
    # torch.as_tensor of a read-only array (a pandas copy-on-write view, np.broadcast_to)
    # warned "The given NumPy array is not writable", pointing at the library's line
    import warnings

    import numpy as np

    mean, cov = np.zeros(2), np.eye(2)
    mean.flags.writeable = cov.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = GaussianModel(mean, cov)
    assert torch.equal(model.mean, torch.zeros(2)) and torch.equal(model.cov, torch.eye(2))
