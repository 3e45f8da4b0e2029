"""fused_leapfrog_step: reference maths bit-for-bit, second order, reversibility, errors."""

import math

import pytest
import torch

import torchebm.cuda as tc
from torchebm.core import DoubleWellModel, GaussianModel, HarmonicModel
from torchebm.core.errors import ConfigurationError, ShapeError

MU = torch.tensor([0.5, -1.0, 2.0])
VAR = torch.tensor([0.5, 1.0, 2.0])


def _reference(x, p, grad_fn, h, n, minv=None):
    """Velocity Verlet written out: half kick, (drift, kick) * n with a final half kick."""
    p = p - (0.5 * h) * grad_fn(x)
    for i in range(n):
        x = x + h * (p if minv is None else p * minv)
        g = grad_fn(x)
        p = p - (h if i < n - 1 else 0.5 * h) * g
    return x, p, g


def _reference_stored(x, p, grad_fn, h, n):
    """`_reference` for a half-precision state: every update in float32, stored back in the
    state's dtype, the gradient taken at the stored position."""

    def kick(p, g, k):
        return (p.float() - g.float() * k).to(p.dtype)

    p = kick(p, grad_fn(x), 0.5 * h)
    for i in range(n):
        x = (x.float() + p.float() * h).to(x.dtype)
        g = grad_fn(x)
        p = kick(p, g, h if i < n - 1 else 0.5 * h)
    return x, p, g


# one mass per coordinate ("event", "row" = (1, d)) or per element of x ("element" (B, d),
# "chain" (B, 1) broadcast over the coordinates: the kernels' per-element layout)
MASSES = [
    None,
    2.0,
    torch.tensor([1.0, 2.0, 4.0]),
    torch.tensor([[1.0, 2.0, 4.0]]),
    torch.linspace(0.5, 3.0, 18).reshape(6, 3),
    torch.tensor([[0.5], [1.0], [2.0], [3.0], [4.0], [0.25]]),
]


@pytest.mark.parametrize("model", [HarmonicModel(k=2.5), DoubleWellModel(1.5, 0.8),
                                   GaussianModel(MU, torch.diag(VAR))],
                         ids=lambda m: type(m).__name__)  # fmt: skip
@pytest.mark.parametrize("mass", MASSES, ids=["none", "float", "event", "row", "element", "chain"])
def test_fallbacks_equal_the_reference_bit_for_bit(model, mass):
    gen = torch.Generator().manual_seed(0)
    x, p = torch.randn(6, 3, generator=gen), torch.randn(6, 3, generator=gen)
    minv = None if mass is None else (1.0 / mass if isinstance(mass, float) else 1.0 / mass)
    ref = _reference(x, p, model.gradient, 0.05, 4, minv)
    # analytic model: whole-trajectory fallback; callable: step-by-step fallback
    for fn in (model, model.gradient, lambda z, m=model: m.gradient(z)):
        out = tc.fused_leapfrog_step(x, p, fn, 0.05, 4, mass=mass)
        for a, b in zip(out, ref):
            assert torch.equal(a, b)


def test_supplied_gradient_is_used_instead_of_a_first_evaluation():
    model = HarmonicModel(k=3.0)
    x, p = torch.randn(4, 3), torch.randn(4, 3)
    calls = []

    def grad_fn(z):
        calls.append(1)
        return model.gradient(z)

    out = tc.fused_leapfrog_step(x, p, grad_fn, 0.1, 5, grad=model.gradient(x))
    assert len(calls) == 5
    ref = tc.fused_leapfrog_step(x, p, grad_fn, 0.1, 5)
    assert len(calls) == 11
    assert all(torch.equal(a, b) for a, b in zip(out, ref))
    assert torch.equal(out[2], model.gradient(out[0]))


def test_second_order_convergence_on_the_harmonic_oscillator():
    # exact flow of H = k x^2 / 2 + p^2 / (2 m): rotation with frequency sqrt(k / m)
    k, m, t = 2.0, 0.5, 1.0
    w = math.sqrt(k / m)
    x0 = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    p0 = torch.tensor([[0.3, 0.8]], dtype=torch.float64)
    exact = x0 * math.cos(w * t) + p0 / (m * w) * math.sin(w * t)
    errs = []
    for n in (20, 40, 80):
        x, _, _ = tc.fused_leapfrog_step(x0, p0, HarmonicModel(k=k), t / n, n, mass=m)
        errs.append((x - exact).abs().max().item())
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(o - 2.0) < 0.1 for o in orders), orders


def test_energy_error_is_bounded_and_the_map_is_reversible():
    model = DoubleWellModel(barrier_height=1.0, b=1.0)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    p = torch.randn(64, 2, generator=gen, dtype=torch.float64)

    def ham(x, p):
        return model(x) + 0.5 * (p**2).sum(-1)

    # the energy error of a second-order symplectic map is O(h^2) at a fixed time
    drift = []
    for h, n in ((0.02, 100), (0.01, 200)):
        x1, p1, _ = tc.fused_leapfrog_step(x, p, model, h, n)
        drift.append((ham(x1, p1) - ham(x, p)).abs().sum().item())
    assert 3.5 < drift[0] / drift[1] < 4.5, drift
    assert drift[1] / ham(x, p).sum().item() < 1e-3
    x2, p2, _ = tc.fused_leapfrog_step(x1, -p1, model, 0.01, 200)
    torch.testing.assert_close(x2, x, rtol=0, atol=1e-9)
    torch.testing.assert_close(-p2, p, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    model = HarmonicModel(k=2.0)
    x, p = torch.randn(5, 3).to(dtype), torch.randn(5, 3).to(dtype)
    xa, pa, ga = tc.fused_leapfrog_step(x, p, model, 0.1, 3)
    xr, pr, gr = _reference(x.float(), p.float(), model.gradient, 0.1, 3)
    assert xa.dtype == dtype
    assert torch.equal(xa, xr.to(dtype)) and torch.equal(pa, pr.to(dtype))
    # callable form: each kick and drift computed in float32 from the stored values, the
    # state stored in its own dtype between them (the gradient sees the stored x)
    xb, pb, gb = tc.fused_leapfrog_step(x, p, model.gradient, 0.1, 3)
    xs, ps, gs = _reference_stored(x, p, model.gradient, 0.1, 3)
    assert xb.dtype == pb.dtype == dtype
    assert torch.equal(xb, xs) and torch.equal(pb, ps) and torch.equal(gb, gs)
    torch.testing.assert_close(xb.float(), xr, rtol=2e-2, atol=2e-2)  # near the float32 path


def test_inputs_are_not_modified_and_outputs_do_not_require_grad():
    x, p = torch.randn(3, 2), torch.randn(3, 2)
    x0, p0 = x.clone(), p.clone()
    out = tc.fused_leapfrog_step(x, p, HarmonicModel().gradient, 0.1, 3)
    assert torch.equal(x, x0) and torch.equal(p, p0)
    assert not any(t.requires_grad for t in out)
    x.requires_grad_(True)
    for fn in (HarmonicModel(), HarmonicModel().gradient, lambda z: 1.0 * z):
        out = tc.fused_leapfrog_step(x, p, fn, 0.1, 3)
        assert not any(t.requires_grad for t in out)
        assert x.grad is None


def test_errors():
    x, p = torch.zeros(4, 3), torch.zeros(4, 3)
    model = HarmonicModel()
    with pytest.raises(TypeError, match="grad_fn must be a callable"):
        tc.fused_leapfrog_step(x, p, 3.0, 0.1)
    with pytest.raises(ShapeError, match=r"grad_fn\(x\) must have shape"):
        tc.fused_leapfrog_step(x, p, lambda z: z[:, :2], 0.1)
    with pytest.raises(ShapeError, match="p must have shape"):
        tc.fused_leapfrog_step(x, p[:, :2], model, 0.1)
    with pytest.raises(ValueError, match="n_steps must be >= 1"):
        tc.fused_leapfrog_step(x, p, model, 0.1, 0)
    with pytest.raises(ValueError, match="step_size must be positive"):
        tc.fused_leapfrog_step(x, p, model, -0.1)
    with pytest.raises(ValueError, match="mass must be positive"):
        tc.fused_leapfrog_step(x, p, model, 0.1, mass=0.0)
    with pytest.raises(TypeError, match="mass must be None"):
        tc.fused_leapfrog_step(x, p, model, 0.1, mass="heavy")
    with pytest.raises(ShapeError, match="mass must broadcast"):
        tc.fused_leapfrog_step(x, p, model, 0.1, mass=torch.ones(5))
    with pytest.raises(TypeError, match="mass must have a floating-point dtype"):
        tc.fused_leapfrog_step(x, p, model, 0.1, mass=torch.ones(3, dtype=torch.long))
    for bad in (-1.0, 0.0, math.nan, math.inf):  # a tensor mass is checked like a float one
        mass = torch.tensor([1.0, bad, 2.0])
        with pytest.raises(ConfigurationError, match=r"mass must hold positive finite values"):
            tc.fused_leapfrog_step(x, p, model, 0.1, mass=mass)
    with pytest.raises(ShapeError, match="grad must have shape"):
        tc.fused_leapfrog_step(x, p, model, 0.1, grad=torch.zeros(4, 2))
    # a dense (d, d) mass matrix: zeros off the diagonal, or a shape that does not broadcast,
    # say that the kernels take a diagonal (the errors named only the zeros, or the shape)
    dense = "a dense mass matrix is not accepted"
    with pytest.raises(ConfigurationError, match=rf"got \[0.0, 0.0, 0.0.*{dense}"):
        tc.fused_leapfrog_step(x, p, model, 0.1, mass=torch.eye(3))
    with pytest.raises(ShapeError, match=rf"got shape \(3, 3\); {dense}"):
        tc.fused_leapfrog_step(x, p, model, 0.1, mass=torch.full((3, 3), 0.5) + torch.eye(3))
    with pytest.raises(ShapeError, match=r"got shape \(5,\)$"):  # no hint for a vector
        tc.fused_leapfrog_step(x, p, model, 0.1, mass=torch.ones(5))
    with pytest.raises(ConfigurationError, match=r"got \[0.0, 0.0, 0.0, 0.0, 0.0, 0.0\]$"):
        tc.fused_leapfrog_step(x[:, :2], p[:, :2], model, 0.1, mass=torch.eye(3))  # not (2, 2)


def test_a_square_mass_with_as_many_chains_as_coordinates_is_per_element():
    # the documented rule (the docstring did not say it): with chains (B, D) and B == D a
    # positive (D, D) tensor is one mass per element of x, never a dense matrix, which
    # HamiltonianMonteCarlo takes (and runs eagerly) instead
    assert "``B == D`` a positive ``(D, D)`` tensor is one" in " ".join(
        tc.fused_leapfrog_step.__doc__.split()
    )
    model = HarmonicModel(k=2.0)
    gen = torch.Generator().manual_seed(1)
    x, p = torch.randn(3, 3, generator=gen), torch.randn(3, 3, generator=gen)
    mass = torch.full((3, 3), 0.5) + torch.eye(3)  # positive and positive definite
    out = tc.fused_leapfrog_step(x, p, model, 0.05, 4, mass=mass)
    for a, b in zip(out, _reference(x, p, model.gradient, 0.05, 4, 1.0 / mass)):
        assert torch.equal(a, b)
