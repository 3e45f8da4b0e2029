"""langevin_chain: the eager chain is n reference steps with the model's gradient; moments."""

import math

import pytest
import torch

import torchebm.cuda as tc
from torchebm.core import (
    DoubleWellModel,
    GaussianModel,
    HarmonicModel,
    RastriginModel,
)
from torchebm.core.errors import NonFiniteError, ShapeError

H, S = 0.02, 0.9
MU = torch.tensor([0.5, -1.0, 2.0])
VAR = torch.tensor([0.5, 1.0, 2.0])


def _energies():
    return [
        HarmonicModel(k=2.5),
        DoubleWellModel(barrier_height=1.5, b=0.8),
        GaussianModel(MU, torch.diag(VAR)),
    ]


def _reference_chain(x, model, noise, clamp=None):
    """n_steps of the reference update with the model's own gradient, in float32."""
    y = x.float()
    for eps in noise:
        y = y - H * model.gradient(y) + (S * math.sqrt(2 * H)) * eps.float()
        if clamp is not None:
            y = y.clamp(*clamp)
    return y.to(x.dtype)


@pytest.mark.parametrize("model", _energies(), ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("clamp", [None, (-1.0, 1.5)])
def test_eager_chain_is_the_reference_loop_bit_for_bit(model, clamp):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=gen)
    noise = torch.randn(7, 16, 3, generator=gen)
    out = tc.langevin_chain(x, model, 7, H, S, clamp=clamp, noise=noise)
    assert torch.equal(out, _reference_chain(x, model, noise, clamp))
    assert torch.equal(x, torch.randn(16, 3, generator=torch.Generator().manual_seed(0)))


def test_half_precision_chain_keeps_a_float32_state_and_rounds_once():
    model = DoubleWellModel()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, generator=gen).half()
    noise = torch.randn(5, 8, 3, generator=gen)
    out = tc.langevin_chain(x, model, 5, H, S, noise=noise)
    assert out.dtype == torch.float16
    assert torch.equal(out, _reference_chain(x, model, noise))


def test_generator_draws_one_normal_tensor_per_step():
    model = HarmonicModel(k=1.5)
    x = torch.randn(10, 3)
    gen, twin = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = tc.langevin_chain(x, model, 6, H, S, generator=gen)
    noise = torch.stack([torch.randn(10, 3, generator=twin) for _ in range(6)])
    assert torch.equal(out, _reference_chain(x, model, noise))
    assert torch.equal(gen.get_state(), twin.get_state())
    # seed= is a shortcut for a freshly seeded generator
    assert torch.equal(tc.langevin_chain(x, model, 6, H, S, seed=3), out)


def test_out_is_written_in_place():
    model = HarmonicModel()
    x = torch.randn(4, 3)
    noise = torch.randn(3, 4, 3)
    ref = _reference_chain(x, model, noise)
    res = tc.langevin_chain(x, model, 3, H, S, noise=noise, out=x)
    assert res is x and torch.equal(x, ref)


def test_harmonic_chain_reaches_the_discrete_stationary_variance():
    # x' = (1 - hk) x + sqrt(2h) xi has stationary variance 1 / (k (1 - hk / 2))
    k, h, n = 4.0, 0.05, 4000
    x = tc.langevin_chain(
        torch.zeros(n, 2), HarmonicModel(k=k), 60, h, generator=torch.Generator().manual_seed(0)
    )
    var = 1 / (k * (1 - h * k / 2))
    se = var * math.sqrt(2 / (2 * n))
    assert abs(x.var().item() - var) < 4 * se
    assert abs(x.mean().item()) < 4 * math.sqrt(var / (2 * n))


def test_diagonal_gaussian_chain_reaches_mean_and_variance():
    h, n = 0.05, 4000
    lam = 1 / VAR
    x = tc.langevin_chain(
        MU.expand(n, 3).clone(),
        GaussianModel(MU, torch.diag(VAR)),
        150,
        h,
        generator=torch.Generator().manual_seed(1),
    )
    var = 1 / (lam * (1 - h * lam / 2))
    assert torch.all((x.mean(0) - MU).abs() < 4 * (var / n).sqrt())
    assert torch.all((x.var(0) - var).abs() < 4 * var * math.sqrt(2 / n))


def test_double_well_chain_populates_both_wells_symmetrically():
    n = 4000
    x = tc.langevin_chain(
        torch.zeros(n, 1),
        DoubleWellModel(barrier_height=0.5, b=1.0),
        200,
        0.05,
        generator=torch.Generator().manual_seed(2),
    )
    frac = (x > 0).float().mean().item()
    assert abs(frac - 0.5) < 4 * math.sqrt(0.25 / n)
    assert 0.6 < x.abs().mean().item() < 1.4  # mass sits around the minima at +-1


def test_supports_energy():
    assert tc.supports_energy(HarmonicModel())
    assert tc.supports_energy(DoubleWellModel())
    assert tc.supports_energy(GaussianModel(MU, torch.diag(VAR)))
    assert not tc.supports_energy(
        GaussianModel(torch.zeros(2), torch.tensor([[1.0, 0.3], [0.3, 1.0]]))
    )
    assert not tc.supports_energy(RastriginModel())
    assert not tc.supports_energy(lambda x: x)

    class Shifted(HarmonicModel):
        def closed_form_gradient(self, x):
            return self.k * (x - 1)

    assert not tc.supports_energy(Shifted())


def test_errors():
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="DoubleWellModel, HarmonicModel or GaussianModel"):
        tc.langevin_chain(x, RastriginModel(), 2, H)
    full = GaussianModel(torch.zeros(3), torch.eye(3) + 0.1)
    with pytest.raises(ValueError, match="non-diagonal covariance"):
        tc.langevin_chain(x, full, 2, H)
    with pytest.raises(ShapeError, match=r"x must have shape \(B, 3\)"):
        tc.langevin_chain(torch.zeros(4, 2), GaussianModel(MU, torch.diag(VAR)), 2, H)
    with pytest.raises(ValueError, match="n_steps must be >= 1"):
        tc.langevin_chain(x, HarmonicModel(), 0, H)
    with pytest.raises(TypeError, match="n_steps must be an int"):
        tc.langevin_chain(x, HarmonicModel(), 2.0, H)
    with pytest.raises(ShapeError, match=r"noise must have shape \(2, 4, 3\)"):
        tc.langevin_chain(x, HarmonicModel(), 2, H, noise=torch.zeros(4, 3))


def test_divergence_is_reported_with_the_chain_indices():
    x = torch.zeros(5, 2)
    x[3] = 30.0
    with pytest.raises(NonFiniteError, match=r"batch indices \[3\]") as info:
        tc.langevin_chain(x, DoubleWellModel(), 10, 0.5, noise_scale=0.0)
    assert info.value.indices == [3]
    y = tc.langevin_chain(x, DoubleWellModel(), 10, 0.5, noise_scale=0.0, check_finite=False)
    assert not torch.isfinite(y[3]).all() and torch.isfinite(y[[0, 1, 2, 4]]).all()


def test_upstream_module_is_kept_with_a_deprecated_chain():
    from torchebm.cuda import fused_langevin as fl

    assert fl.fused_langevin_step is tc.fused_langevin_step
    x = torch.full((6, 2), 0.5)
    with pytest.warns(DeprecationWarning, match="langevin_chain"):
        y = fl.doublewell_langevin_chain(x, 5, 0.01, barrier_height=1.5, b=0.8, seed=1)
    assert y is x  # in place, as upstream
    ref = tc.langevin_chain(torch.full((6, 2), 0.5), DoubleWellModel(1.5, 0.8), 5, 0.01, seed=1)
    assert torch.equal(x, ref)
