"""The extension points of torchebm.core, each through a minimal subclass written here:
`BaseIntegrator`, `BaseLoss`, `BaseInterpolant`, `BaseCostCoupling`/`BaseModelCoupling`,
plus `errors`, `versions` and the deprecated aliases."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import torchebm.core as core
from torchebm.core import (
    BaseCostCoupling,
    BaseIntegrator,
    BaseInterpolant,
    BaseLoss,
    BaseModelCoupling,
    CouplingResult,
    expand_t_like_x,
)
from torchebm.core.errors import (
    ConfigurationError,
    NonFiniteError,
    ShapeError,
    check_energies,
    check_in,
    check_int,
    check_positive,
    check_probability,
    check_tensor,
)

F64 = torch.float64


# ---------------------------------------------------------------------------- integrator
class ForwardEuler(BaseIntegrator):
    """x' = x + h f(x, t): the smallest integrator honouring the contract."""

    def step(self, state, step_size, *, drift, t=None):
        x = state["x"]
        h, _ = self._prep_step(step_size, x)
        self.nfe = 1
        return {"x": x + h * drift(x, self._time_vector(t, x))}

    def integrate(self, state, step_size, n_steps, *, drift):
        x, t = state["x"], 0.0
        for _ in range(n_steps):
            x = self.step({"x": x}, step_size, drift=drift, t=t)["x"]
            t += step_size
        self.nfe = n_steps
        return {"x": x}


def test_integrator_contract_closed_form_and_validation():
    euler = ForwardEuler(dtype=F64)
    x0 = torch.ones(3, 2, dtype=F64)
    out = euler.integrate({"x": x0}, 0.1, 10, drift=lambda x, t: -x)["x"]
    torch.testing.assert_close(out, torch.full((3, 2), 0.9**10, dtype=F64))  # (1-h)^n exactly
    assert euler.nfe == 10 and out is not x0
    per_sample = euler.step(
        {"x": x0}, torch.tensor([0.1, 0.2, 0.3], dtype=F64), drift=lambda x, t: -x
    )
    torch.testing.assert_close(per_sample["x"][:, 0], torch.tensor([0.9, 0.8, 0.7], dtype=F64))
    seen = []
    euler.step({"x": x0}, 0.1, drift=lambda x, t: seen.append(t) or x, t=0.5)
    assert seen[0].shape == (3,) and torch.all(seen[0] == 0.5)
    with pytest.raises(TypeError, match="step_size"):
        euler.step({"x": x0}, True, drift=lambda x, t: x)
    with pytest.raises(ConfigurationError, match="step_size must be finite"):
        euler.step({"x": x0}, math.nan, drift=lambda x, t: x)
    with pytest.raises(ConfigurationError, match="B=3"):
        euler.step({"x": x0}, torch.ones(2), drift=lambda x, t: x)
    with pytest.raises(ConfigurationError, match="t must be a scalar or a \\(B,\\) tensor"):
        euler.step({"x": x0}, 0.1, drift=lambda x, t: x, t=torch.zeros(2))
    with pytest.raises(TypeError):
        BaseIntegrator()  # abstract


# ---------------------------------------------------------------------------- loss
class MeanEnergy(BaseLoss):
    """mean E(x) of a quadratic energy with a learnable scale."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, model_kwargs=None, generator=None):
        x = self.prepare_input(x)
        return self.apply_nan_policy(0.5 * self.scale * x.square().sum(-1).mean())


def test_loss_contract_value_gradient_and_nan_policies():
    loss_fn = MeanEnergy()
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    loss = loss_fn(x)
    assert loss.item() == pytest.approx(0.5 * (5 + 9) / 2)
    loss.backward()
    assert loss_fn.scale.grad.item() == pytest.approx(3.5)
    with pytest.raises(TypeError, match="x"):
        loss_fn(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(ShapeError):
        loss_fn(torch.ones(3))
    bad = torch.tensor([[math.inf, 0.0]])
    with pytest.raises(NonFiniteError, match="non-finite loss"):
        loss_fn(bad)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        MeanEnergy(nan_policy="warn")(bad)
    assert math.isinf(MeanEnergy(nan_policy="ignore")(bad).item())
    deferred = MeanEnergy(nan_policy="deferred")
    deferred(bad)  # no sync, no error yet
    with pytest.raises(NonFiniteError):
        deferred.check_finite()
    with pytest.raises(ValueError, match="nan_policy"):
        MeanEnergy(nan_policy="sometimes")


# ---------------------------------------------------------------------------- interpolant
class Linear(BaseInterpolant):
    """x_t = t x1 + (1 - t) x0."""

    def compute_alpha_t(self, t):
        return t, torch.ones_like(t)

    def compute_sigma_t(self, t):
        return 1 - t, -torch.ones_like(t)


def test_interpolant_contract_path_velocity_and_conversions():
    g = torch.Generator().manual_seed(0)
    x0, x1 = (
        torch.randn(4, 3, 2, generator=g, dtype=F64),
        torch.randn(4, 3, 2, generator=g, dtype=F64),
    )
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=F64)
    xt, ut = Linear().interpolate(x0, x1, t)
    tb = expand_t_like_x(t, x0)
    assert tb.shape == (4, 1, 1)
    torch.testing.assert_close(xt, tb * x1 + (1 - tb) * x0)
    torch.testing.assert_close(ut, x1 - x0)
    # score of the Gaussian path with x0 ~ N(0, I): for the linear path E[x0 | x_t] maps back
    it = Linear()
    v = it.score_to_velocity(it.velocity_to_score(ut, xt, t[1:2].expand(4)), xt, t[1:2].expand(4))
    torch.testing.assert_close(v, ut)
    with pytest.raises(ShapeError, match="same shape"):
        it.interpolate(x0, x1[:, :1], t)


def test_interpolant_schedules_run_in_the_precision_of_x():
    """A float32 ``t`` with float64 data: the schedules are evaluated at ``t`` in float64,
    as a float64 ``t`` gives (they ran in float32: 1/3 became 0.33333334, an error of 1e-8
    in x_t)."""

    class Cosine(BaseInterpolant):  # alpha = sin(pi t / 2), sigma = cos(pi t / 2)
        def compute_alpha_t(self, t):
            return torch.sin(0.5 * math.pi * t), 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

        def compute_sigma_t(self, t):
            return torch.cos(0.5 * math.pi * t), -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    x0, x1 = torch.ones(3, 2, dtype=F64), torch.full((3, 2), 2.0, dtype=F64)
    t32 = torch.tensor([1 / 3, 0.5, 0.9], dtype=torch.float32)
    t = t32.to(F64)[:, None]  # the same times, exactly, in float64
    xt, ut = Cosine().interpolate(x0, x1, t32)
    assert xt.dtype == F64
    a, s = torch.sin(0.5 * math.pi * t), torch.cos(0.5 * math.pi * t)
    torch.testing.assert_close(xt, a * x1 + s * x0, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(ut, 0.5 * math.pi * (s * x1 - a * x0), rtol=1e-15, atol=1e-15)


# ---------------------------------------------------------------------------- couplings
class Reverse(BaseCostCoupling):
    """Pairs row i with the row of largest cost (a deterministic, checkable rule)."""

    def solve(self, cost, generator):
        return cost.argmax(dim=1)


class Shift(BaseModelCoupling):
    def generate(self, x0, generator, **kwargs):
        return self.model(x0)


def test_coupling_contracts():
    x0 = torch.tensor([[0.0], [1.0], [2.0]])
    x1 = torch.tensor([[0.0], [1.0], [3.0]])  # squared costs: rows [0,1,9], [1,0,4], [4,1,1]
    res = Reverse()(x0, x1)
    assert isinstance(res, CouplingResult) and res.weights is None
    torch.testing.assert_close(res.x1, torch.tensor([[3.0], [3.0], [0.0]]))
    a, b = res
    assert a is x0 and torch.equal(b, res.x1)
    assert res[0] is res.x0 and res[1] is res.x1 and res[-1] is res.x1  # was a TypeError
    torch.testing.assert_close(Shift(lambda z: z + 1)(x0).x1, x0 + 1)
    with pytest.raises(ConfigurationError, match="equal batch sizes"):
        Reverse()(x0, x1[:2])
    # a generated x1 of another event shape would broadcast against x0 in the interpolation
    # (only the batch size was checked): the pair must have one shape
    for bad in (lambda z: z.expand(3, 2), lambda z: z[:, 0]):
        with pytest.raises(ShapeError, match=r"Shift: the model must map x0 of shape \(3, 1\)"):
            Shift(bad)(x0)


# ---------------------------------------------------------------------------- errors, versions
def test_validators_name_the_argument_and_value():
    assert check_positive("step_size", 0.5) == 0.5
    with pytest.raises(ConfigurationError, match="step_size.*-0.01"):
        check_positive("step_size", -0.01)
    with pytest.raises(TypeError, match="n_steps"):
        check_int("n_steps", 2.5)
    assert check_int("n_steps", 3, minimum=1) == 3
    with pytest.raises(ConfigurationError, match="p"):
        check_probability("p", 1.5)
    with pytest.raises(ConfigurationError, match="mode.*'c'"):
        check_in("mode", "c", ("a", "b"))
    assert issubclass(ConfigurationError, ValueError) and issubclass(ShapeError, ValueError)
    # a complex tensor would lose its imaginary part in the cast to the working dtype
    with pytest.raises(TypeError, match=r"x must have a real \(not complex\) dtype"):
        check_tensor("x", torch.zeros(2, 2, dtype=torch.complex64))
    with pytest.raises(TypeError, match="x must have a floating-point dtype, got torch.complex64"):
        check_tensor("x", torch.zeros(2, 2, dtype=torch.complex64), floating=True)
    assert check_tensor("x", torch.zeros(2, 2, dtype=torch.int64)).dtype == torch.int64
    with pytest.raises(TypeError, match="n_steps must be an int, got True"):
        check_int("n_steps", True)
    e = torch.zeros(3)
    assert check_energies("model", e, 3) is e
    with pytest.raises(
        ShapeError, match=r"model must return energies of shape \(B,\) = \(3,\), got list"
    ):
        check_energies("model", [0.0, 0.0, 0.0], 3)


def test_versions_reports_core_and_torch():
    v = core.versions()
    assert v["torchebm-core"] == core.__version__ and "torch" in v


def test_deprecated_energy_alias_warns_once_and_matches_the_model():
    from torchebm.core import _module

    # once per process: forget an earlier use by another test on this worker
    _module._WARNED.discard("torchebm.core.GaussianEnergy")
    x = torch.tensor([[1.0, -1.0]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = core.GaussianEnergy(torch.zeros(2), torch.eye(2))
        core.GaussianEnergy(torch.zeros(2), torch.eye(2))
    assert sum(issubclass(w.category, DeprecationWarning) for w in caught) == 1
    torch.testing.assert_close(old(x), core.GaussianModel(torch.zeros(2), torch.eye(2))(x))
