"""Sampler workloads: Langevin, HMC, gradient descent, Nesterov and FlowSampler (ODE/SDE).

Each ``build`` returns the library call (``sampler.sample(...)`` with a seeded generator)
and a hand-written loop drawing the same random numbers in the same order, so the check
compares the two final states directly.
"""

from __future__ import annotations

import math

import torch
from _harness import Case, Config, Workload
from _nets import HandMLP, HandVelocity, agree, make_generator

__all__ = ["WORKLOADS"]

ETA = 0.01  # Langevin / descent step size
#: MLP energies: the floor takes the gradient by the same explicit backward pass as
#: MLPEnergy.gradient (HandMLP.grad); a second floor with one autograd call per step is
#: timed beside it (the "autograd floor" note)
_EXPLICIT = "; floor grad: explicit backward"


def _mlp_energy(cfg: Config):
    from torchebm.models import MLPEnergy

    torch.manual_seed(cfg.seed)
    model = MLPEnergy(2, (64, 64), "silu").to(cfg.device)
    return model, HandMLP(model.net)


def _gaussian(cfg: Config):
    from torchebm.core import GaussianModel

    mean = torch.tensor([1.0, -1.0])
    cov = torch.tensor([[1.0, 0.5], [0.5, 2.0]])
    model = GaussianModel(mean, cov).to(cfg.device)
    return model, model.mean.clone(), model.cov_inv.clone()


# ----------------------------------------------------------------------------- Langevin
def _langevin_case(cfg: Config, kind: str, trajectory: bool = False) -> Case:
    from torchebm.samplers import LangevinDynamics

    dev = cfg.device
    n, steps = 10_000, cfg.size(500, 50)
    sigma = 1.0
    amp = sigma * math.sqrt(2 * ETA)
    if kind == "mlp":
        model, hand = _mlp_energy(cfg)
    else:
        model, mu, prec = _gaussian(cfg)
    # eager: on CUDA backend="auto" runs the fused kernels with their own random numbers
    # (timed in the cuda group); the eager update draws the floor's noise ("auto" on CPU)
    sampler = LangevinDynamics(model, step_size=ETA, noise_scale=sigma, backend="eager")
    x0 = torch.randn(n, 2, device=dev)
    gen = make_generator(dev)

    def library():
        gen.manual_seed(cfg.seed)
        return sampler.sample(x=x0, n_steps=steps, generator=gen, return_trajectory=trajectory)

    def make_floor(grad_of):
        def floor():
            gen.manual_seed(cfg.seed)
            x = x0.clone()
            noise = torch.empty_like(x)
            traj = torch.empty(n, steps, 2, device=dev) if trajectory else None
            if kind != "mlp":
                d, g = torch.empty_like(x), torch.empty_like(x)
            with torch.no_grad():
                for i in range(steps):
                    if kind == "mlp":
                        g = grad_of(x)
                    else:  # closed-form gradient of the Gaussian energy: (x - mu) P
                        torch.mm(torch.sub(x, mu, out=d), prec, out=g)
                    x.add_(g, alpha=-ETA).add_(noise.normal_(generator=gen), alpha=amp)
                    if traj is not None:
                        traj[:, i] = x
            return traj if traj is not None else x

        return floor

    tol = 2e-3 if kind == "mlp" else 1e-4
    return Case(
        library,
        make_floor(hand.grad if kind == "mlp" else None),
        check=lambda a, b: agree(a, b, atol=tol, rtol=tol),
        notes=f"{n} chains x {steps} steps"
        + (", trajectory" if trajectory else "")
        + (_EXPLICIT if kind == "mlp" else ""),
        alt={"autograd floor": make_floor(hand.autograd_grad)} if kind == "mlp" else None,
    )


# ----------------------------------------------------------------------------- HMC
def _hmc_case(cfg: Config) -> Case:
    from torchebm.samplers import HamiltonianMonteCarlo

    dev = cfg.device
    n, steps, n_lf, h = 2_000, cfg.size(100, 10), 10, 0.1
    model, mu, prec = _gaussian(cfg)
    sampler = HamiltonianMonteCarlo(model, step_size=h, n_leapfrog_steps=n_lf, backend="eager")
    x0 = torch.randn(n, 2, device=dev)
    gen = make_generator(dev)

    def library():
        gen.manual_seed(cfg.seed)
        return sampler.sample(x=x0, n_steps=steps, generator=gen)

    def floor():
        gen.manual_seed(cfg.seed)
        x = x0.clone()
        p = torch.empty_like(x)
        d, g = torch.empty_like(x), torch.empty_like(x)

        def grad(z):  # closed form: (z - mu) P, into the preallocated buffer g
            return torch.mm(torch.sub(z, mu, out=d), prec, out=g)

        def energy(z):
            e = z - mu
            return 0.5 * ((e @ prec) * e).sum(1)

        with torch.no_grad():
            u_cur, g_cur = energy(x), grad(x).clone()
            for _ in range(steps):
                p.normal_(generator=gen)
                h_cur = torch.add(u_cur, torch.linalg.vecdot(p, p), alpha=0.5)
                # leapfrog with the half kicks of consecutive steps merged; the gradient at
                # the start is the one kept from the last accepted end point, so each
                # trajectory evaluates L gradients, not L + 1
                xn = x.clone()
                pn = torch.add(p, g_cur, alpha=-0.5 * h)
                for i in range(n_lf):
                    xn.add_(pn, alpha=h)
                    pn.add_(grad(xn), alpha=-h if i < n_lf - 1 else -0.5 * h)
                u_new = energy(xn)
                h_new = torch.add(u_new, torch.linalg.vecdot(pn, pn), alpha=0.5)
                u = torch.rand(n, generator=gen, device=dev)
                accept = (u.neg_().log1p_() <= h_cur - h_new)[:, None]  # log(1 - u) > -inf
                x = torch.where(accept, xn, x)
                g_cur = torch.where(accept, g, g_cur)  # g: the gradient at xn
                u_cur = torch.where(accept[:, 0], u_new, u_cur)
        return x

    def check(a, b):
        same = ((a - b).abs().amax(1) < 1e-4).double().mean().item()
        if same < 0.95:  # an accept/reject can flip on rounding; most chains must agree
            raise AssertionError(f"HMC chains agree in only {same:.1%} of rows")
        return f"{same:.1%} of chains equal"

    return Case(library, floor, check=check, notes=f"{n} chains x {steps} x {n_lf} leapfrog")


# ----------------------------------------------------------------------------- descent
def _descent_case(cfg: Config, nesterov: bool) -> Case:
    from torchebm.samplers import GradientDescentSampler, NesterovSampler

    dev = cfg.device
    n, steps, mu = 10_000, cfg.size(200, 20), 0.9
    model, hand = _mlp_energy(cfg)
    if nesterov:
        sampler = NesterovSampler(model, step_size=ETA, momentum=mu)
    else:
        sampler = GradientDescentSampler(model, step_size=ETA)
    x0 = torch.randn(n, 2, device=dev)

    def library():
        return sampler.sample(x=x0, n_steps=steps)

    def make_floor(grad_of):
        def floor():
            x = x0.clone()
            v = torch.zeros_like(x)
            with torch.no_grad():
                for _ in range(steps):
                    if nesterov:
                        g = grad_of(torch.add(x, v, alpha=mu))
                        v.mul_(mu).add_(g, alpha=-ETA)
                        x.add_(v)
                    else:
                        x.add_(grad_of(x), alpha=-ETA)
            return x

        return floor

    return Case(
        library,
        make_floor(hand.grad),
        check=lambda a, b: agree(a, b, atol=1e-3, rtol=1e-3),
        notes=f"{n} chains x {steps} steps" + _EXPLICIT,
        alt={"autograd floor": make_floor(hand.autograd_grad)},
    )


# ----------------------------------------------------------------------------- FlowSampler
def _flow_case(cfg: Config, method: str) -> Case:
    from torchebm.models import MLPVelocity
    from torchebm.samplers import FlowSampler

    dev = cfg.device
    n, steps = 10_000, cfg.size(100, 10)
    torch.manual_seed(cfg.seed)
    field = MLPVelocity(2, (64, 64), "silu", n_time_frequencies=4).to(dev)
    hand = HandVelocity(field.net, 4, requires_grad=False)
    x0 = torch.randn(n, 2, device=dev)
    gen = make_generator(dev)
    if method == "sde":
        last = 0.04
        sampler = FlowSampler(
            field, mode="sde", diffusion_form="sigma", last_step="Mean", last_step_size=last
        )
        t0, t1 = 0.0, 1.0 - last
    else:
        sampler = FlowSampler(field, integrator="euler" if method == "euler" else "heun")
        t0, t1 = 0.0, 1.0
    times = [t0 + (t1 - t0) * k / steps for k in range(steps)] + [t1]
    grid = torch.tensor(times, device=dev)

    def library():
        gen.manual_seed(cfg.seed)
        return sampler.sample(x=x0, n_steps=steps, generator=gen)

    def sde_coeffs(t: float) -> tuple[float, float, float]:
        # linear path: alpha = t, sigma = 1 - t; D = sigma ("sigma" form); score from v:
        # s = (r v - x) / (sigma^2 + r sigma), r = max(t, 1e-8); drift = v + D s = a v - b x
        r = max(t, 1e-8)
        den = max((1 - t) ** 2 + r * (1 - t), 1e-12)
        diff = 1.0 - t
        return 1.0 + diff * r / den, diff / den, diff

    def floor():
        gen.manual_seed(cfg.seed)
        x = x0.clone()
        noise = torch.empty_like(x)
        with torch.no_grad():
            for i in range(steps):
                ti, dt = grid[i].expand(n), times[i + 1] - times[i]
                v = hand(x, ti)
                if method == "euler":
                    x.add_(v, alpha=dt)
                elif method == "heun":
                    v2 = hand(torch.add(x, v, alpha=dt), grid[i + 1].expand(n))
                    x.add_(v, alpha=0.5 * dt).add_(v2, alpha=0.5 * dt)
                else:
                    a, b, diff = sde_coeffs(times[i])
                    amp = math.sqrt(2 * diff * dt)
                    x.mul_(1 - b * dt).add_(v, alpha=a * dt)
                    x.add_(noise.normal_(generator=gen), alpha=amp)
            if method == "sde":  # last step "Mean": x + delta * drift(x, t1), no noise
                a, b, _ = sde_coeffs(t1)
                v = hand(x, grid[-1].expand(n))
                x.mul_(1 - b * last).add_(v, alpha=a * last)
        return x

    return Case(
        library,
        floor,
        check=lambda a, b: agree(a, b, atol=1e-4, rtol=1e-4),
        notes=f"{n} points x {steps} steps",
    )


WORKLOADS = [
    Workload(
        "langevin_mlp",
        "samplers",
        "LangevinDynamics on MLPEnergy 2-64-64-1 SiLU (explicit backward in both)",
        lambda c: _langevin_case(c, "mlp"),
    ),
    Workload(
        "langevin_gaussian",
        "samplers",
        "LangevinDynamics on GaussianModel (closed-form gradient)",
        lambda c: _langevin_case(c, "gaussian"),
    ),
    Workload(
        "langevin_gaussian_traj",
        "samplers",
        "LangevinDynamics on GaussianModel returning the full trajectory",
        lambda c: _langevin_case(c, "gaussian", trajectory=True),
    ),
    Workload(
        "hmc_gaussian",
        "samplers",
        "HamiltonianMonteCarlo on GaussianModel (closed-form gradient)",
        _hmc_case,
    ),
    Workload(
        "gd_mlp",
        "samplers",
        "GradientDescentSampler on MLPEnergy",
        lambda c: _descent_case(c, nesterov=False),
    ),
    Workload(
        "nesterov_mlp",
        "samplers",
        "NesterovSampler on MLPEnergy",
        lambda c: _descent_case(c, nesterov=True),
    ),
    Workload(
        "flow_euler",
        "samplers",
        "FlowSampler ODE, Euler, MLPVelocity",
        lambda c: _flow_case(c, "euler"),
    ),
    Workload(
        "flow_heun",
        "samplers",
        "FlowSampler ODE, Heun, MLPVelocity",
        lambda c: _flow_case(c, "heun"),
    ),
    Workload(
        "flow_sde",
        "samplers",
        "FlowSampler SDE (Euler-Maruyama, sigma diffusion, Mean last step), MLPVelocity",
        lambda c: _flow_case(c, "sde"),
    ),
]
