"""Runge-Kutta integrators: tableaux, convergence orders, adaptive control, time direction."""

import math

import pytest
import torch
from _support.examples import load_example

from torchebm.integrators import (
    AdaptiveHeunIntegrator,
    BackwardEulerMaruyamaIntegrator,
    BaseRungeKuttaIntegrator,
    BaseSDERungeKuttaIntegrator,
    Bosh3Integrator,
    Dopri5Integrator,
    Dopri8Integrator,
    EulerMaruyamaIntegrator,
    HeunIntegrator,
    MidpointIntegrator,
    RK4Integrator,
    RK438Integrator,
)

F64 = torch.float64
# the worked example of docs/contributing.md ("Adding an integrator") runs the same contract
RalstonIntegrator = load_example("40_custom_integrator.py").RalstonIntegrator
ALL_RK = [
    RalstonIntegrator,
    EulerMaruyamaIntegrator,
    BackwardEulerMaruyamaIntegrator,
    HeunIntegrator,
    MidpointIntegrator,
    RK4Integrator,
    RK438Integrator,
    AdaptiveHeunIntegrator,
    Bosh3Integrator,
    Dopri5Integrator,
    Dopri8Integrator,
]
ADAPTIVE = [AdaptiveHeunIntegrator, Bosh3Integrator, Dopri5Integrator, Dopri8Integrator]


def field(x, t):
    """dx/dt = -x + t (time-dependent, known solution)."""
    return -x + t.reshape(-1, *([1] * (x.ndim - 1)))


def exact(x0, t0, t1):
    # x(t) = t - 1 + C e^{-t}, C = (x0 - t0 + 1) e^{t0}
    c = (x0 - t0 + 1) * math.exp(t0)
    return t1 - 1 + c * math.exp(-t1)


@pytest.mark.parametrize("cls", ALL_RK)
def test_tableau_consistency(cls):
    a, b, c = cls.tableau_a, cls.tableau_b, cls.tableau_c
    assert math.isclose(sum(b), 1.0, abs_tol=1e-12)
    for row, ci in zip(a, c):
        assert math.isclose(sum(row), ci, abs_tol=1e-9)
    if cls.error_weights is not None:
        assert math.isclose(sum(cls.error_weights), 0.0, abs_tol=1e-12)
        assert cls.order is not None


def test_pinned_tableau_values():
    assert RK4Integrator.tableau_b == (1 / 6, 1 / 3, 1 / 3, 1 / 6)
    assert RK438Integrator.tableau_a[3] == (1.0, -1.0, 1.0)
    assert Dopri5Integrator.error_weights[0] == 71 / 57600
    assert Dopri5Integrator.error_weights[-1] == -1 / 40
    assert Bosh3Integrator.error_weights[-1] == -1 / 8
    assert len(Dopri8Integrator.error_weights) == 14 and Dopri8Integrator.error_weights[-1] == 0.0
    assert BackwardEulerMaruyamaIntegrator.tableau_a == ((1.0,),)


def _order(cls, ns, **kw):
    integ = cls(dtype=F64, **kw)
    x0 = torch.full((2, 1), 0.5, dtype=F64)
    errs = []
    for n in ns:
        out = integ.integrate({"x": x0}, 1.0 / n, n, drift=field, adaptive=False)["x"]
        errs.append(abs(out[0, 0].item() - exact(0.5, 0.0, 1.0)))
    return [math.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]


@pytest.mark.parametrize(
    "cls,order,ns",
    [
        (EulerMaruyamaIntegrator, 1, (20, 40, 80)),
        (BackwardEulerMaruyamaIntegrator, 1, (20, 40, 80)),
        (HeunIntegrator, 2, (20, 40, 80)),
        (RalstonIntegrator, 2, (20, 40, 80)),
        (MidpointIntegrator, 2, (20, 40, 80)),
        (AdaptiveHeunIntegrator, 2, (20, 40, 80)),
        (Bosh3Integrator, 3, (10, 20, 40)),
        (RK4Integrator, 4, (10, 20, 40)),
        (RK438Integrator, 4, (10, 20, 40)),
        (Dopri5Integrator, 5, (16, 32, 64)),
    ],
)
def test_measured_convergence_order(cls, order, ns):
    kw = {"solver_max_iter": 60} if cls is BackwardEulerMaruyamaIntegrator else {}
    rates = _order(cls, ns, **kw)
    for r in rates:
        assert abs(r - order) < 0.25, (cls.__name__, rates)


def test_dopri8_order_on_nonlinear_problem():
    """x' = x^2, x(0) = 1/2 -> x(t) = 1 / (2 - t); order >= 8 (round-off limits the range)."""
    d8 = Dopri8Integrator(dtype=F64)
    errs = []
    for n in (2, 4, 8):
        out = d8.integrate(
            {"x": torch.full((1, 1), 0.5, dtype=F64)},
            1.0 / n,
            n,
            drift=lambda x, t: x * x,
            adaptive=False,
        )["x"]
        errs.append(abs(out.item() - 1.0))
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(7.2 < r < 10.5 for r in rates), rates  # measured 7.47, 7.80, 7.78


@pytest.mark.parametrize(
    "cls,degree", [(HeunIntegrator, 1), (RK4Integrator, 3), (Dopri5Integrator, 4)]
)
def test_exact_on_polynomials(cls, degree):
    # dx/dt = t^degree integrates exactly for methods of order > degree
    integ = cls(dtype=F64)
    x = torch.zeros(1, 1, dtype=F64)

    def f(x, t):
        return (t**degree).reshape(-1, 1).expand_as(x)

    out = integ.integrate({"x": x}, 0.25, 4, drift=f, adaptive=False)["x"]
    assert abs(out.item() - 1.0 / (degree + 1)) < 1e-13


@pytest.mark.parametrize("cls", [EulerMaruyamaIntegrator, HeunIntegrator, RK4Integrator, *ADAPTIVE])
def test_backward_time_grid_time_dependent_field(cls):
    """API.md BUG 3/10: v = x + t integrated from t=1 to t=0 must match the closed form."""
    solver_tol = 1e-7 if cls is AdaptiveHeunIntegrator else 1e-10
    integ = cls(dtype=F64, atol=solver_tol, rtol=solver_tol)
    x1 = torch.zeros(3, 2, dtype=F64)

    def v(x, t):
        return x + t.reshape(-1, 1)

    grid = torch.linspace(1.0, 0.0, 201, dtype=F64)
    out = integ.integrate({"x": x1}, t=grid, drift=v)["x"]
    # x(t) = -t - 1 + C e^t with x(1)=0 -> C = 2/e ; x(0) = -1 + 2/e = -0.2642
    truth = -1.0 + 2.0 / math.e
    tol = {EulerMaruyamaIntegrator: 2e-3, HeunIntegrator: 1e-5, AdaptiveHeunIntegrator: 1e-5}.get(
        cls, 1e-7
    )
    assert torch.allclose(out, torch.full_like(out, truth), atol=tol)
    assert abs(truth - (-0.368)) > 0.1  # the buggy upstream answer is far away


def test_forward_then_backward_returns_start():
    d5 = Dopri5Integrator(dtype=F64, atol=1e-10, rtol=1e-10)
    x0 = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(0))

    def f(x, t):
        return torch.sin(x) * torch.cos(t).reshape(-1, 1)

    y = d5.integrate({"x": x0}, t=torch.tensor([0.0, 2.0], dtype=F64), drift=f)["x"]
    z = d5.integrate({"x": y}, t=torch.tensor([2.0, 0.0], dtype=F64), drift=f)["x"]
    assert torch.allclose(z, x0, atol=1e-8)


@pytest.mark.parametrize("cls", ADAPTIVE)
def test_adaptive_reaches_tolerance(cls):
    x0 = torch.full((2, 1), 0.5, dtype=F64)
    grid = torch.tensor([0.0, 2.0], dtype=F64)
    errs, nfes = [], []
    for tol in (1e-4, 1e-6, 1e-8):
        integ = cls(dtype=F64, atol=tol, rtol=tol, max_steps=100_000)
        out = integ.integrate({"x": x0}, 0.1, t=grid, drift=field)["x"]
        err = abs(out[0, 0].item() - exact(0.5, 0.0, 2.0))
        errs.append(err)
        nfes.append(integ.nfe)
        assert err < 20 * tol, (cls.__name__, tol, err)
    assert nfes[0] <= nfes[1] <= nfes[2] and nfes[0] < nfes[2]


def _rk4_nfe_for(err_target, f, x0, t1, truth):
    """Smallest RK4 budget (searched on a 10 % grid of step counts) reaching ``err_target``."""
    rk4 = RK4Integrator(dtype=F64)
    n = 1
    while n < 20_000:
        out = rk4.integrate({"x": x0}, t1 / n, n, drift=f)["x"]
        if abs(out[0, 0].item() - truth) <= err_target:
            return rk4.nfe
        n = int(n * 1.1) + 1
    return math.inf


@pytest.mark.parametrize("cls,tol", [(Dopri5Integrator, 1e-8), (Dopri8Integrator, 1e-10)])
def test_adaptive_fewer_nfe_than_rk4_at_equal_error(cls, tol):
    """A solution with a fast transient: adaptivity pays off."""
    x0 = torch.ones(1, 1, dtype=F64)

    def f(x, t):
        return -20.0 * (x - torch.cos(t).reshape(-1, 1))

    # closed form of x' = -k(x - cos t), x(0)=1
    k, t1 = 20.0, 3.0
    a = k / (k * k + 1)
    part = lambda t: a * (k * math.cos(t) + math.sin(t))  # noqa: E731
    truth = part(t1) + (1 - part(0.0)) * math.exp(-k * t1)
    integ = cls(dtype=F64, atol=tol, rtol=tol)
    out = integ.integrate({"x": x0}, t=torch.tensor([0.0, t1], dtype=F64), drift=f)["x"]
    err = abs(out.item() - truth)
    assert err < 100 * tol
    # measured: dopri5 962 vs RK4 2160 NFE; dopri8 1159 vs RK4 11020 NFE
    assert integ.nfe < 0.7 * _rk4_nfe_for(err, f, x0, t1, truth)


def test_fsal_saves_evaluations():
    d5 = Dopri5Integrator(dtype=F64, atol=1e-3, rtol=1e-3)
    calls = []

    def f(x, t):
        calls.append(1)
        return -x

    d5.integrate({"x": torch.ones(1, 1, dtype=F64)}, 0.5, 4, drift=f)
    assert d5.nfe == len(calls)
    # every accepted step after the first costs 6 (not 7) evaluations
    assert d5.nfe < 7 * (d5.nfe // 6 + 1)
    assert (d5.nfe - 1) % 6 == 0 or (d5.nfe - 7) % 6 == 0 or d5.nfe % 6 == 1


def test_max_steps_exhaustion_raises():
    d5 = Dopri5Integrator(dtype=F64, atol=1e-12, rtol=1e-12, max_steps=5)
    with pytest.raises(RuntimeError, match="maximum number of steps"):
        d5.integrate(
            {"x": torch.ones(2, 1, dtype=F64)}, 0.5, 10, drift=lambda x, t: torch.sin(10 * x)
        )


def test_nfe_counts_a_failed_adaptive_call_and_the_message_names_stiffness():
    """`nfe` is the evaluations of the last call, a failed one too: after a max_steps error
    it kept the previous call's count. The message says looser tolerances do not lift a
    stiff problem's stability bound."""
    d5 = Dopri5Integrator(dtype=F64, max_steps=50)
    d5.integrate({"x": torch.ones(1, 2, dtype=F64)}, 0.1, 10, drift=lambda x, t: -x)
    before = d5.nfe

    def rotation(x, t):
        return torch.stack([x[:, 1], -x[:, 0]], 1)

    with pytest.raises(RuntimeError, match="the problem is stiff"):
        d5.integrate({"x": torch.ones(1, 2, dtype=F64)}, t=[0.0, 1e3], drift=rotation)
    assert d5.nfe > 6 * 50 > before  # 50 attempted steps of 6 evaluations, plus the start


def test_a_field_returning_numpy_is_refused_by_type():
    """A numpy array of the state's shape passed the shape check (its tuple equals a Size)
    and failed later with an AttributeError; it is refused naming the type."""
    from torchebm.core.errors import ShapeError

    with pytest.raises(ShapeError, match="got ndarray"):
        Dopri5Integrator(dtype=F64).integrate(
            {"x": torch.ones(1, 2, dtype=F64)}, t=[0.0, 1.0], drift=lambda x, t: (-x).numpy()
        )


def test_nonfinite_drift_raises_instead_of_looping():
    from torchebm.core.errors import NonFiniteError

    d5 = Dopri5Integrator(dtype=F64, max_steps=10_000)
    with pytest.raises(NonFiniteError, match="drift"):
        d5.integrate(
            {"x": torch.ones(1, 1, dtype=F64)},
            0.1,
            10,
            drift=lambda x, t: torch.full_like(x, math.nan),
        )


def test_fixed_path_nfe_and_step_shapes():
    rk4 = RK4Integrator()
    out = rk4.integrate({"x": torch.ones(5, 3, 2)}, 0.1, 7, drift=lambda x, t: -x)
    assert out["x"].shape == (5, 3, 2)
    assert rk4.nfe == 28
    s = rk4.step({"x": torch.ones(5, 3, 2)}, 0.1, drift=lambda x, t: -x)
    assert rk4.nfe == 4 and torch.allclose(s["x"], torch.full((5, 3, 2), math.exp(-0.1)), atol=1e-6)


def test_per_sample_and_tensor_step_sizes():
    heun = HeunIntegrator(dtype=F64)
    x = torch.ones(3, 2, dtype=F64)
    h = torch.tensor([0.1, 0.2, 0.0], dtype=F64)
    out = heun.step({"x": x}, h, drift=lambda x, t: -x)["x"]
    for i, hi in enumerate(h.tolist()):
        assert torch.allclose(out[i], torch.full((2,), 1 - hi + hi * hi / 2, dtype=F64))
    out0 = heun.step({"x": x}, torch.tensor(0.1, dtype=F64), drift=lambda x, t: -x)["x"]
    out1 = heun.step({"x": x}, 0.1, drift=lambda x, t: -x)["x"]
    assert torch.allclose(out0, out1)


def test_nonuniform_grid_matches_closed_form():
    rk4 = RK4Integrator(dtype=F64)
    grid = torch.tensor([0.0, 0.05, 0.2, 0.3, 0.7, 1.0], dtype=F64) ** 1.0
    fine = torch.linspace(0, 1, 400, dtype=F64) ** 2
    out = rk4.integrate({"x": torch.full((1, 1), 0.5, dtype=F64)}, t=fine, drift=field)["x"]
    assert abs(out.item() - exact(0.5, 0.0, 1.0)) < 1e-10
    coarse = rk4.integrate({"x": torch.full((1, 1), 0.5, dtype=F64)}, t=grid, drift=field)["x"]
    assert abs(coarse.item() - exact(0.5, 0.0, 1.0)) < 1e-4


def test_validation_errors():
    rk4 = RK4Integrator()
    x = {"x": torch.ones(2, 2)}
    with pytest.raises(ValueError, match="drift must be provided"):
        rk4.integrate(x, 0.1, 3, drift=None)
    with pytest.raises(ValueError, match="n_steps must be >= 1, got 0"):
        rk4.integrate(x, 0.1, 0, drift=lambda x, t: x)
    with pytest.raises(ValueError, match="t must be a 1D tensor with length >= 2"):
        rk4.integrate(x, 0.1, 3, drift=lambda x, t: x, t=torch.zeros(1))
    with pytest.raises(ValueError, match="t must be a 1D tensor with length >= 2"):
        rk4.integrate(x, drift=lambda x, t: x, t=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="adaptive=True"):
        rk4.integrate(x, 0.1, 3, drift=lambda x, t: x, adaptive=True)
    with pytest.raises(ValueError, match="only supported for ODEs"):
        HeunIntegrator().integrate(x, 0.1, 3, drift=lambda x, t: x, noise_scale=1.0, adaptive=True)
    with pytest.raises(TypeError, match="state"):
        rk4.step(torch.ones(2), 0.1, drift=lambda x, t: x)
    with pytest.raises(ValueError, match="max_steps"):
        Dopri5Integrator(max_steps=0)
    with pytest.raises(ValueError, match="solver_max_iter"):
        BackwardEulerMaruyamaIntegrator(solver_max_iter=0)


def test_custom_tableau_is_a_few_lines():
    class Ralston(BaseRungeKuttaIntegrator):
        tableau_a = ((), (2 / 3,))
        tableau_b = (1 / 4, 3 / 4)
        tableau_c = (0.0, 2 / 3)

    rates = _order(Ralston, (20, 40, 80))
    assert all(abs(r - 2) < 0.2 for r in rates)

    class Broken(BaseRungeKuttaIntegrator):
        tableau_a = ((),)
        tableau_b = (0.5, 0.5)
        tableau_c = (0.0,)

    with pytest.raises(TypeError, match="tableau"):
        Broken()


def test_inference_mode_and_dtype_follow_input():
    rk4 = RK4Integrator()
    out = rk4.integrate(
        {"x": torch.ones(2, 2, dtype=F64)}, 0.1, 3, drift=lambda x, t: -x, inference_mode=True
    )
    assert out["x"].dtype == F64 and out["x"].is_inference()


def test_gradients_flow_through_fixed_steps():
    w = torch.tensor(0.7, dtype=F64, requires_grad=True)
    out = RK4Integrator(dtype=F64).integrate(
        {"x": torch.ones(1, 1, dtype=F64)}, 0.1, 10, drift=lambda x, t: -w * x
    )
    out["x"].sum().backward()
    # d/dw e^{-w} = -e^{-w}
    assert abs(w.grad.item() + math.exp(-0.7)) < 1e-6


def test_backward_euler_is_stable_on_stiff_problem():
    bem = BackwardEulerMaruyamaIntegrator(
        dtype=F64, solver_max_iter=400, solver_tol=1e-14, solver_check_every=5
    )  # contraction 0.9 per iteration: about 300 to reach 1e-14 (200 warned: unconverged)
    em = EulerMaruyamaIntegrator(dtype=F64)
    # dx/dt = -k x with k h = 0.9: Picard converges (h Lip < 1); explicit Euler oscillates
    k, h = 90.0, 0.01
    x = torch.ones(1, 1, dtype=F64)
    out = bem.integrate({"x": x}, h, 50, drift=lambda x, t: -k * x)["x"]
    assert abs(out.item() - (1 / (1 + k * h)) ** 50) < 1e-10
    assert bem.nfe < 400 * 50 and bool(bem.solver_converged.all())  # early exit happened
    out_em = em.integrate({"x": x}, h, 50, drift=lambda x, t: -k * x)["x"]
    assert abs(out_em.item() - (1 - k * h) ** 50) < 1e-12


def test_sde_family_membership():
    assert issubclass(EulerMaruyamaIntegrator, BaseSDERungeKuttaIntegrator)
    assert issubclass(HeunIntegrator, BaseSDERungeKuttaIntegrator)
    assert not issubclass(RK4Integrator, BaseSDERungeKuttaIntegrator)


@pytest.mark.parametrize("cls", ADAPTIVE)
def test_adaptive_names_the_rows_of_a_non_finite_drift(cls):
    from torchebm.core.errors import NonFiniteError

    bad = torch.tensor([False, True, False, True])

    def f(x, t):  # NaN on rows 1 and 3: no step size helps
        return torch.where(bad[:, None], torch.full_like(x, math.nan), -x)

    with pytest.raises(NonFiniteError, match="drift .*NaN or inf.* indices \\[1, 3\\]") as info:
        cls(dtype=F64).integrate({"x": torch.ones(4, 2, dtype=F64)}, 0.1, 5, drift=f)
    assert info.value.indices == [1, 3]


def test_adaptive_underflow_with_a_finite_drift_stays_its_own_error():
    calls = [0]

    def f(x, t):  # finite, but flips sign at every evaluation: no step is ever accurate
        calls[0] += 1
        return torch.full_like(x, 1e20 if calls[0] % 2 else -1e20)

    with pytest.raises(RuntimeError, match="step size underflow .*finite drift.*stiff"):
        Dopri5Integrator(dtype=F64).integrate({"x": torch.ones(3, 1, dtype=F64)}, 0.1, 5, drift=f)


# The adaptive loop stopped within 1e-12 * max(|t_end|, 1) of the end: a short interval far
# from 0 ([1e6, 1e6 + 5e-7]) or a tiny one ([0, 5e-13]) was skipped (increment 0, nfe 2).
@pytest.mark.parametrize("cls", ADAPTIVE)
@pytest.mark.parametrize(
    "t0,t1", [(0.0, 5e-13), (1e3, 1e3 + 5e-10), (1e6, 1e6 + 5e-7), (1e6 + 5e-7, 1e6), (0.0, 1.0)]
)
def test_adaptive_integrates_short_intervals_far_from_zero(cls, t0, t1):
    grid = torch.tensor([t0, t1], dtype=F64)
    span = float(grid[1] - grid[0])  # the span in float64, as the integrator sees it

    def velocity(x, t):  # dx/dt = 1 / |span|: the increment is +-1 whatever the interval
        return torch.full_like(x, 1.0 / abs(span))

    integ = cls(dtype=F64)
    out = integ.integrate({"x": torch.zeros(2, 1, dtype=F64)}, t=grid, drift=velocity)["x"]
    expected = torch.full((2, 1), math.copysign(1.0, span), dtype=F64)
    torch.testing.assert_close(out, expected, atol=1e-9, rtol=0)
    assert integ.nfe > 2


@pytest.mark.parametrize("cls", ADAPTIVE)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_adaptive_half_precision_default_tolerances(cls, dtype):
    """The error norms are taken in float32: in float16 the squares of x / (atol + rtol |x|)
    (about 1e3) overflowed, the starting step came out NaN and the loop ran to max_steps."""
    x0 = torch.linspace(-2.0, 2.0, 16).reshape(8, 2).to(dtype)
    out = cls().integrate({"x": x0}, drift=lambda x, t: -x, t=torch.tensor([0.0, 1.0]))["x"]
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), x0.float() * math.exp(-1.0), rtol=0, atol=0.05)


def test_integer_states_and_tensors_are_refused_by_dtype():
    """Leapfrog on an int64 state failed in add_ ("alpha must not be a floating point
    number"), mean_flat on one in mean() ("could not infer output dtype"): neither named
    the argument; the Runge-Kutta integrators already did."""
    from torchebm.flows import mean_flat
    from torchebm.integrators import LeapfrogIntegrator

    ints = torch.ones(2, 2, dtype=torch.long)
    with pytest.raises(TypeError, match=r"state\['x'\] must have a floating-point dtype"):
        LeapfrogIntegrator().integrate({"x": ints, "p": ints}, 0.1, 2, gradient=lambda x, t: x)
    with pytest.raises(TypeError, match="t must have a floating-point dtype"):
        mean_flat(ints)
