"""`GaussianModel` state that cannot go stale: assigning ``mean``/``cov`` validates the value
and recomputes the precision ``cov_inv``; ``.to()``, ``load_state_dict`` (also of torchebm
0.8.9's checkpoints) and parametrizations keep working. References are computed
independently in float64 with ``torch.linalg.solve``."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

from torchebm.core import GaussianModel
from torchebm.core.errors import ConfigurationError, ShapeError

F64 = torch.float64
MEAN0 = torch.tensor([0.5, -1.0], dtype=F64)
COV0 = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=F64)
MEAN1 = torch.tensor([-2.0, 3.0], dtype=F64)
COV1 = torch.tensor([[0.3, -0.2], [-0.2, 0.5]], dtype=F64)


def _x() -> torch.Tensor:
    return torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=F64) * 2.0


def _reference(mean: torch.Tensor, cov: torch.Tensor, x: torch.Tensor):
    """Energy 0.5 d^T cov^-1 d and gradient cov^-1 d of d = x - mean, by a linear solve."""
    d = (x - mean).to(F64)
    g = torch.linalg.solve(cov.to(F64), d.T).T
    return 0.5 * (d * g).sum(-1), g


def _assert_model_is(model: GaussianModel, mean, cov, tol: float = 1e-10) -> None:
    x = _x()
    e_ref, g_ref = _reference(mean, cov, x)
    xm = x.to(model.cov_inv.dtype)
    torch.testing.assert_close(model(xm).to(F64), e_ref, rtol=tol, atol=tol)
    for grad in (model.gradient, model.gradient_function()):
        torch.testing.assert_close(grad(xm).to(F64), g_ref, rtol=tol, atol=tol)


def test_assigning_cov_recomputes_the_precision():
    m = GaussianModel(MEAN0, COV0, dtype=F64)
    _assert_model_is(m, MEAN0, COV0)
    m.cov = COV1
    assert torch.equal(m.cov, COV1)
    _assert_model_is(m, MEAN0, COV1)
    torch.testing.assert_close(m.cov_inv, torch.linalg.inv(COV1), rtol=1e-12, atol=1e-12)


def test_assigning_mean_is_used():
    m = GaussianModel(MEAN0, COV0, dtype=F64)
    m.mean = MEAN1
    _assert_model_is(m, MEAN1, COV0)
    m.cov = COV1.tolist()  # anything the constructor takes: a nested list (-> float32)
    _assert_model_is(m, MEAN1, COV1.float())


def test_a_resolved_gradient_function_is_per_call():
    """`gradient_function()` is resolved once per sampling run; a new call sees a new cov."""
    m = GaussianModel(MEAN0, COV0, dtype=F64)
    m.gradient_function()
    m.cov = COV1
    _assert_model_is(m, MEAN0, COV1)


def test_assigned_values_take_the_models_dtype_and_device():
    m = GaussianModel(MEAN0, COV0)  # float32 buffers
    m.cov = COV1  # float64 value
    assert m.cov.dtype == m.cov_inv.dtype == m.mean.dtype == torch.float32
    _assert_model_is(m, MEAN0, COV1.float(), tol=1e-5)
    m.double()
    m.cov = COV0.float()
    assert m.cov.dtype == m.cov_inv.dtype == F64
    _assert_model_is(m, MEAN0, COV0.float(), tol=1e-10)


@pytest.mark.parametrize(
    "name, value, error, words",
    [
        ("cov", torch.eye(3, dtype=F64), ShapeError, ["mean and cov dimensions differ", "(3, 3)"]),
        ("cov", torch.ones(2, dtype=F64), ShapeError, ["cov must be a square 2-D", "(2,)"]),
        ("mean", torch.zeros(3, dtype=F64), ShapeError, ["mean and cov dimensions differ", "3"]),
        ("mean", torch.zeros(2, 1, dtype=F64), ShapeError, ["mean must be a 1-D", "(2, 1)"]),
        ("mean", torch.tensor([0.0, float("nan")]), ConfigurationError, ["mean must be finite"]),
        (
            "cov",
            torch.tensor([[1.0, float("inf")], [float("inf"), 1.0]]),
            ConfigurationError,
            ["cov must be finite", "inf"],
        ),
        (
            "cov",
            torch.tensor([[1.0, 0.5], [0.0, 1.0]]),
            ConfigurationError,
            ["cov must be symmetric", "0.5"],
        ),
        (
            "cov",
            torch.tensor([[1.0, 2.0], [2.0, 1.0]]),
            ConfigurationError,
            ["cov must be positive definite", "2."],
        ),
        ("cov", "not a matrix", (TypeError, ValueError), []),
    ],
)
def test_assignment_is_validated_and_a_rejected_value_changes_nothing(name, value, error, words):
    m = GaussianModel(MEAN0, COV0, dtype=F64)
    with pytest.raises(error) as info:
        setattr(m, name, value)
    for w in words:
        assert w in str(info.value), str(info.value)
    assert torch.equal(m.mean, MEAN0) and torch.equal(m.cov, COV0)
    _assert_model_is(m, MEAN0, COV0)


def test_state_dict_keys_are_torchebm_089s_and_loading_derives_cov():
    """torchebm 0.8.9 saved ``mean`` and ``cov_inv`` (its ``cov`` was no buffer): the state
    dict keeps exactly those keys, and loading one (strict, plain or ``assign=True``) gives
    the model of the saved moments, ``cov`` derived from the loaded precision."""
    a = GaussianModel(MEAN0, COV0, dtype=F64)
    a.cov = COV1
    sd = a.state_dict()
    assert list(sd) == ["mean", "cov_inv"]
    for assign in (False, True):
        b = GaussianModel(torch.zeros(2), torch.eye(2), dtype=F64)
        b.load_state_dict({k: v.clone() for k, v in sd.items()}, strict=True, assign=assign)
        _assert_model_is(b, MEAN0, COV1)
        torch.testing.assert_close(b.cov, COV1, rtol=1e-12, atol=1e-12)
    # a checkpoint as torchebm 0.8.9 wrote it (mean and torch.inverse(cov), float32), nested
    # in a module tree: the hook runs for a submodule too
    saved = {"model.mean": MEAN1.float(), "model.cov_inv": torch.inverse(COV0.float())}
    tree = torch.nn.ModuleDict({"model": GaussianModel(torch.zeros(2), torch.eye(2))})
    result = tree.load_state_dict(saved, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    _assert_model_is(tree["model"], MEAN1, COV0, tol=1e-5)  # float32 rounding
    torch.testing.assert_close(tree["model"].cov, COV0.float(), rtol=1e-5, atol=1e-6)


def test_a_checkpoint_whose_precision_is_not_positive_definite_is_rejected():
    m = GaussianModel(MEAN0, COV0, dtype=F64)
    bad = {"mean": MEAN0, "cov_inv": torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=F64)}
    with pytest.raises(ConfigurationError, match="positive definite"):
        m.load_state_dict(bad)


def test_a_parametrized_mean_is_read_through_the_module():
    """Attribute reads, not the private buffer dict: a parametrization of ``mean`` (public
    ``torch.nn.utils.parametrize``) is what the energy and its gradient use."""

    class Shift(torch.nn.Module):
        def forward(self, m):
            return m + 1.0

    m = GaussianModel(MEAN0, COV0, dtype=F64)
    parametrize.register_parametrization(m, "mean", Shift())
    _assert_model_is(m, MEAN0 + 1.0, COV0)


def test_a_model_pickled_whole_by_089_gets_its_cov_back():
    # 0.8.9 pickled mean and cov_inv only: the unpickled model had no .cov (AttributeError)
    # and no hook deriving it when a state dict was loaded into it later
    from _support.pickles_089 import unpickle_089

    model = GaussianModel(MEAN0, COV0, dtype=F64)
    old = unpickle_089(model)
    torch.testing.assert_close(old.cov, COV0, rtol=1e-12, atol=1e-12)
    energy, grad = _reference(MEAN0, COV0, _x())
    torch.testing.assert_close(old(_x()), energy)
    torch.testing.assert_close(old.gradient(_x()), grad)
    old.load_state_dict({"mean": MEAN1, "cov_inv": torch.linalg.inv(COV1)})
    torch.testing.assert_close(old.cov, COV1, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e2, 1e8])
def test_symmetry_is_checked_relative_to_the_covariances_scale(scale):
    # an absolute tolerance (atol 1e-6) refused float32 covariances with entries ~100 whose
    # rounding asymmetry is 3e-8 relative, and accepted a clearly asymmetric one at 1e-8
    q = torch.linalg.qr(torch.randn(50, 50, generator=torch.Generator().manual_seed(0)))[0]
    cov = (q @ torch.diag(torch.linspace(1.0, 2.0, 50)) @ q.T).float() * scale
    assert (cov - cov.T).abs().max() > 0  # float32 rounding of the product: not symmetric
    GaussianModel(torch.zeros(50), cov)
    skew = torch.tensor([[1.0, 0.5], [0.0, 1.0]]) * scale
    with pytest.raises(ConfigurationError, match="cov must be symmetric"):
        GaussianModel(torch.zeros(2), skew)
    # relative to each entry's sqrt(c_ii c_jj), not to the largest entry: a large variance
    # elsewhere hid a 0.9 correlation given in one triangle only (Cholesky reads the lower)
    badly_scaled = torch.tensor([[1e5, 0.0, 0.0], [0.0, 1.0, 0.9], [0.0, 0.0, 1.0]]) * scale
    with pytest.raises(ConfigurationError, match="cov must be symmetric"):
        GaussianModel(torch.zeros(3), badly_scaled)
