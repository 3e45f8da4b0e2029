"""Integrator and coupling workloads (``torchebm.integrators``, ``torchebm.couplings``).

Integrators run on a cheap analytic drift (a damped rotation, 10 000 x 2 states) so the
loop overhead is visible; dopri5 runs on an MLP velocity field and is also compared with a
hand-written RK4 at equal error (reported in the notes). Couplings run on 2-D Gaussian
noise against the eight-Gaussians toy data.
"""

from __future__ import annotations

import math

import torch
from _harness import Case, Config, Workload
from _nets import HandVelocity, agree, make_generator, mixture_data
from _ot import auction, normalised_cost, sinkhorn_indices

__all__ = ["WORKLOADS"]

_A = ((-0.1, -1.0), (1.0, -0.1))  # damped rotation: dx/dt = x A^T


def _rotation(dev):
    a_t = torch.tensor(_A, device=dev).T.contiguous()

    def drift(x, t):  # the same callable on both sides: only the loop differs
        return x @ a_t

    return drift


def _spring(x, t):  # force of H = |x|^2/2 + |p|^2/2
    return -x


# ----------------------------------------------------------------------------- fixed-step
def _fixed_case(cfg: Config, method: str) -> Case:
    from torchebm.integrators import (
        EulerMaruyamaIntegrator,
        HeunIntegrator,
        LeapfrogIntegrator,
        RK4Integrator,
    )

    dev = cfg.device
    n, steps, h = 10_000, cfg.size(200, 20), 0.01
    drift = _rotation(dev)
    x0 = torch.randn(n, 2, device=dev)
    p0 = torch.randn(n, 2, device=dev)
    gen = make_generator(dev)
    noise_scale = 0.5
    integ = {
        "euler_maruyama": EulerMaruyamaIntegrator,
        "heun": HeunIntegrator,
        "rk4": RK4Integrator,
        "leapfrog": LeapfrogIntegrator,
    }[method]()

    @torch.no_grad()  # the sampling use (HMC, Langevin): no autograd through the loop
    def library():
        if method == "leapfrog":
            out = integ.integrate({"x": x0, "p": p0}, h, steps, drift=_spring)
            return torch.cat([out["x"], out["p"]], 1)
        if method == "euler_maruyama":
            gen.manual_seed(cfg.seed)
            return integ.integrate(
                {"x": x0}, h, steps, drift=drift, noise_scale=noise_scale, generator=gen
            )["x"]
        return integ.integrate({"x": x0}, h, steps, drift=drift)["x"]

    # stage times (t, t + h/2, t + h), precomputed once; the drift ignores them but gets
    # correct ones, as the library's does
    grid = torch.arange(steps + 1, device=dev) * h
    mids = grid[:-1] + 0.5 * h

    def floor():
        x = x0.clone()
        t = torch.zeros(n, device=dev)
        with torch.no_grad():
            if method == "euler_maruyama":
                gen.manual_seed(cfg.seed)
                noise, amp = torch.empty_like(x), noise_scale * math.sqrt(2 * h)
                for _ in range(steps):
                    x.add_(drift(x, t), alpha=h).add_(noise.normal_(generator=gen), alpha=amp)
            elif method == "heun":
                for i in range(steps):
                    k1 = drift(x, grid[i].expand(n))
                    k2 = drift(torch.add(x, k1, alpha=h), grid[i + 1].expand(n))
                    x.add_(k1, alpha=0.5 * h).add_(k2, alpha=0.5 * h)
            elif method == "rk4":
                for i in range(steps):
                    tm = mids[i].expand(n)
                    k1 = drift(x, grid[i].expand(n))
                    k2 = drift(torch.add(x, k1, alpha=0.5 * h), tm)
                    k3 = drift(torch.add(x, k2, alpha=0.5 * h), tm)
                    k4 = drift(torch.add(x, k3, alpha=h), grid[i + 1].expand(n))
                    x.add_(k1, alpha=h / 6).add_(k2, alpha=h / 3)
                    x.add_(k3, alpha=h / 3).add_(k4, alpha=h / 6)
            else:  # leapfrog on H = |x|^2/2 + |p|^2/2, half kicks merged
                p = torch.add(p0, _spring(x, t), alpha=0.5 * h)
                for i in range(steps):
                    x.add_(p, alpha=h)
                    p.add_(_spring(x, t), alpha=h if i < steps - 1 else 0.5 * h)
                return torch.cat([x, p], 1)
        return x

    return Case(
        library,
        floor,
        check=lambda a, b: agree(a, b, atol=1e-4, rtol=1e-4),
        notes=f"{n} x 2 states, {steps} steps",
    )


# ----------------------------------------------------------------------------- dopri5
def _dopri5_solve(f, x, t0, t1, rtol, atol, stats):
    """Hand-written Dormand-Prince 5(4): HNW first step, FSAL, RMS error norm, one batch step."""
    a = (
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    )
    b = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
    c = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
    e = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
    n = x.shape[0]

    def tv(s):
        return torch.full((n,), s, device=x.device, dtype=x.dtype)

    def rms(z):
        return float(z.square().mean().sqrt())

    nfe = 1
    k0 = f(x, tv(t0))
    scale = x.abs() * rtol + atol
    d0, d1 = rms(x / scale), rms(k0 / scale)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    k1 = f(x + h0 * k0, tv(t0 + h0))
    nfe += 1
    d2 = rms((k1 - k0) / scale) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** 0.2
    h = min(100 * h0, h1, t1 - t0)
    t = t0
    while t1 - t > 1e-12 * max(abs(t1), 1.0):
        last = h >= t1 - t
        if last:
            h = t1 - t
        ks = [k0]
        for i in range(1, 6):
            y = x
            for j, aij in enumerate(a[i]):
                if aij != 0.0:
                    y = torch.add(y, ks[j], alpha=h * aij)
            ks.append(f(y, tv(t + c[i] * h)))
        y = x
        for bi, k in zip(b, ks):
            if bi != 0.0:
                y = torch.add(y, k, alpha=h * bi)
        k_new = f(y, tv(t1 if last else t + h))
        nfe += 6
        ks.append(k_new)
        err = sum(k * (h * ei) for ei, k in zip(e, ks) if ei != 0.0)
        ratio = rms(err / (torch.maximum(x.abs(), y.abs()) * rtol + atol))
        if ratio <= 1.0:
            x, k0 = y, k_new
            t = t1 if last else t + h
        factor = 10.0 if ratio == 0 else min(10.0, max(0.2, 0.9 * ratio ** (-0.2)))
        h = h * factor
    stats["nfe"] = nfe
    return x


def _rk4_solve(f, x, t0, t1, n_steps):
    h = (t1 - t0) / n_steps
    n = x.shape[0]
    for i in range(n_steps):
        t = t0 + i * h
        ta = torch.full((n,), t, device=x.device, dtype=x.dtype)
        tm = torch.full((n,), t + 0.5 * h, device=x.device, dtype=x.dtype)
        tb = torch.full((n,), t + h, device=x.device, dtype=x.dtype)
        k1 = f(x, ta)
        k2 = f(torch.add(x, k1, alpha=0.5 * h), tm)
        k3 = f(torch.add(x, k2, alpha=0.5 * h), tm)
        k4 = f(torch.add(x, k3, alpha=h), tb)
        x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def _dopri5_case(cfg: Config) -> Case:
    from torchebm.integrators import Dopri5Integrator
    from torchebm.models import MLPVelocity

    dev = cfg.device
    n, rtol, atol = 10_000, 1e-5, 1e-6
    torch.manual_seed(cfg.seed)
    field = MLPVelocity(2, (64, 64), "silu").to(dev)
    hand = HandVelocity(field.net, 4, requires_grad=False)
    x0 = torch.randn(n, 2, device=dev)
    integ = Dopri5Integrator(rtol=rtol, atol=atol)
    grid = torch.tensor([0.0, 1.0], device=dev)
    stats: dict[str, int] = {}

    def library():
        with torch.no_grad():
            return integ.integrate({"x": x0}, drift=field, t=grid)["x"]

    def floor():
        with torch.no_grad():
            return _dopri5_solve(hand, x0, 0.0, 1.0, rtol, atol, stats)

    def info() -> str:
        # RK4 at the error dopri5 reaches (reference: float64 RK4 with 256 steps, whose
        # own error ~ (1/256)^4 is far below dopri5's)
        with torch.no_grad():
            h64 = HandVelocity(field.net, 4, requires_grad=False, dtype=torch.float64)
            ref = _rk4_solve(h64, x0.double(), 0.0, 1.0, 256)
            err_d5 = float((library().double() - ref).abs().max())
            steps, err = 1, math.inf
            while steps <= 4096:
                err = float((_rk4_solve(hand, x0, 0.0, 1.0, steps).double() - ref).abs().max())
                if err <= err_d5:
                    break
                steps *= 2
            lo, hi = steps // 2, steps  # bisect the smallest step count reaching the error
            while hi - lo > 1:
                mid = (lo + hi) // 2
                e_mid = float((_rk4_solve(hand, x0, 0.0, 1.0, mid).double() - ref).abs().max())
                if e_mid <= err_d5:
                    hi, err = mid, e_mid
                else:
                    lo = mid
            best = math.inf
            for _ in range(3):
                t0 = cfg.now()
                _rk4_solve(hand, x0, 0.0, 1.0, hi)
                best = min(best, cfg.now() - t0)
        return (
            f"NFE lib {integ.nfe} floor {stats.get('nfe')}; max err {err_d5:.1e}; "
            f"hand RK4 at equal error: {hi} steps, NFE {4 * hi}, {best * 1e3:.0f} ms"
        )

    return Case(
        library,
        floor,
        check=lambda a, b: agree(a, b, atol=1e-5, rtol=1e-5),
        notes=f"{n} x 2, MLPVelocity, rtol {rtol:g} atol {atol:g}",
        info=info,
    )


# ----------------------------------------------------------------------------- couplings
def _coupling_case(cfg: Config, kind: str, batch: int) -> Case:
    from torchebm.couplings import ExactOTCoupling, SinkhornCoupling

    dev = cfg.device
    x1 = mixture_data(batch, dev)
    x0 = torch.randn(batch, 2, generator=torch.Generator().manual_seed(3)).to(dev)
    gen = make_generator(dev)
    reg, n_iters = 0.05, 100
    coupling = ExactOTCoupling() if kind == "ot" else SinkhornCoupling(reg=reg, n_iters=n_iters)

    def library():
        gen.manual_seed(cfg.seed)
        return coupling(x0, x1, generator=gen).x1

    def floor():
        with torch.no_grad():
            cost = normalised_cost(x0, x1)
            if kind == "ot":
                return x1[auction(cost)]
            gen.manual_seed(cfg.seed)
            return x1[sinkhorn_indices(cost, reg, n_iters, gen)]

    def check(a, b):
        ca = (x0 - a).square().sum(1).sum()
        cb = (x0 - b).square().sum(1).sum()
        if kind == "ot":  # optimal to the auction tolerance: equal total cost
            return agree(ca, cb, atol=1e-3, rtol=1e-4, what="total cost ")
        return agree(a, b, atol=1e-6, what="pairs ")

    return Case(library, floor, check=check, notes=f"batch {batch}")


WORKLOADS = [
    Workload(
        "euler_maruyama_integrate",
        "integrators",
        "EulerMaruyamaIntegrator.integrate with noise",
        lambda c: _fixed_case(c, "euler_maruyama"),
    ),
    Workload(
        "heun_integrate",
        "integrators",
        "HeunIntegrator.integrate (ODE)",
        lambda c: _fixed_case(c, "heun"),
    ),
    Workload(
        "rk4_integrate", "integrators", "RK4Integrator.integrate", lambda c: _fixed_case(c, "rk4")
    ),
    Workload(
        "leapfrog_integrate",
        "integrators",
        "LeapfrogIntegrator.integrate (harmonic oscillator)",
        lambda c: _fixed_case(c, "leapfrog"),
    ),
    Workload(
        "dopri5_solve",
        "integrators",
        "Dopri5Integrator adaptive solve on MLPVelocity",
        _dopri5_case,
    ),
    Workload(
        "exact_ot_256",
        "couplings",
        "ExactOTCoupling, batch 256",
        lambda c: _coupling_case(c, "ot", 256),
    ),
    Workload(
        "exact_ot_1024",
        "couplings",
        "ExactOTCoupling, batch 1024",
        lambda c: _coupling_case(c, "ot", 1024),
    ),
    Workload(
        "sinkhorn_1024",
        "couplings",
        "SinkhornCoupling (reg 0.05, 100 iterations), batch 1024",
        lambda c: _coupling_case(c, "sinkhorn", 1024),
    ),
]
