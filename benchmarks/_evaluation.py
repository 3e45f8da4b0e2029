"""Evaluation workloads: the probability-flow ODE likelihood and the two-sample metrics.

* ``pf_ode_likelihood``: `torchebm.flows.probability_flow_log_likelihood` (dopri5, exact
  divergence) on a 2-D MLP velocity field, beside torchdiffeq's ``odeint`` (dopri5) on the
  same augmented field with the same tolerances (the peer library; benchmark-only
  dependency group ``bench``). The notes give both NFE.
* ``metrics_*_1e4``: `torchebm.metrics` on 10^4 x 10^4 points in 2-D beside the
  direct torch computation (``torch.cdist`` on the full matrices).
"""

from __future__ import annotations

import math

import torch
from _harness import Case, Config, Skip, Workload
from _nets import agree, make_generator

__all__ = ["WORKLOADS"]


def _pf_case(cfg: Config) -> Case:
    try:
        from torchdiffeq import odeint
    except ImportError as exc:
        raise Skip("torchdiffeq is not installed (uv sync --group bench)") from exc
    from torchebm.flows import probability_flow_log_likelihood
    from torchebm.models import MLPVelocity

    dev = cfg.device
    n = 256 if cfg.quick else 2000
    tol = 1e-5
    torch.manual_seed(cfg.seed)
    field = MLPVelocity(2, (64, 64), "silu").to(dev)
    x = torch.randn(n, 2, generator=make_generator(dev, cfg.seed), device=dev)
    counts = {"floor": 0, "lib": 0}

    def aug(t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The same augmented field by hand: velocity and its exact divergence (2 backward)."""
        counts["floor"] += 1
        with torch.enable_grad():
            xg = state[:, :2].detach().requires_grad_(True)
            v = field(xg, t.expand(n))
            d0 = torch.autograd.grad(v[:, 0].sum(), xg, retain_graph=True)[0][:, 0]
            d1 = torch.autograd.grad(v[:, 1].sum(), xg)[0][:, 1]
        return torch.cat([v.detach(), (d0 + d1)[:, None]], dim=1)

    def library():
        r = probability_flow_log_likelihood(field, x, atol=tol, rtol=tol)
        counts["lib"] = r.nfe
        return r.log_likelihood

    def floor():
        counts["floor"] = 0
        state = torch.cat([x, x.new_zeros(n, 1)], dim=1)
        grid = torch.tensor([1.0, 0.0], device=dev)
        out = odeint(aug, state, grid, rtol=tol, atol=tol, method="dopri5")[-1]
        z, ell = out[:, :2], out[:, 2]
        return -0.5 * z.square().sum(1) - math.log(2 * math.pi) + ell

    def info() -> str:
        # the error of each against a float64 solve at atol = rtol = 1e-10
        ref = probability_flow_log_likelihood(
            field.double(), x.double(), atol=1e-10, rtol=1e-10
        ).log_likelihood
        field.float()
        e_lib = float((library().double() - ref).abs().max())
        e_tde = float((floor().double() - ref).abs().max())
        return (
            f"NFE lib {counts['lib']} torchdiffeq {counts['floor']}; atol=rtol={tol}; "
            f"max err lib {e_lib:.1e} torchdiffeq {e_tde:.1e}"
        )

    return Case(
        library,
        floor,
        check=lambda a, b: agree(a, b, atol=1e-2, what="log p "),
        notes=f"{n} points, dopri5, exact divergence; floor = torchdiffeq.odeint",
        info=info,
    )


def _points(cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    n = 2000 if cfg.quick else 10_000
    g = make_generator(cfg.device, cfg.seed)
    x = torch.randn(n, 2, generator=g, device=cfg.device)
    y = 0.2 + 1.1 * torch.randn(n, 2, generator=g, device=cfg.device)
    return x, y


def _mmd_case(cfg: Config) -> Case:
    from torchebm.metrics import mmd2

    x, y = _points(cfg)
    n, m = x.shape[0], y.shape[0]
    h = 1.0

    def library():
        return mmd2(x, y, bandwidth=h)

    def floor():
        c = -0.5 / h**2
        kxx = torch.cdist(x, x).square_().mul_(c).exp_().sum() - n
        kyy = torch.cdist(y, y).square_().mul_(c).exp_().sum() - m
        kxy = torch.cdist(x, y).square_().mul_(c).exp_().sum()
        return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (n * m)

    return Case(
        library,
        floor,
        check=lambda a, b: agree(a, b, atol=1e-4, what="MMD^2 "),
        notes=f"{n} x {m} points, one bandwidth, unbiased",
    )


def _energy_case(cfg: Config) -> Case:
    from torchebm.metrics import energy_distance

    x, y = _points(cfg)
    n, m = x.shape[0], y.shape[0]

    def library():
        return energy_distance(x, y)

    def floor():
        return (
            2 * torch.cdist(x, y).mean()
            - torch.cdist(x, x).sum() / (n * (n - 1))
            - torch.cdist(y, y).sum() / (m * (m - 1))
        )

    return Case(
        library,
        floor,
        check=lambda a, b: agree(a, b, atol=1e-4, what="energy distance "),
        notes=f"{n} x {m} points, unbiased",
    )


def _sliced_case(cfg: Config) -> Case:
    from torchebm.metrics import sliced_wasserstein

    x, y = _points(cfg)
    p = 128

    def library():
        return sliced_wasserstein(x, y, n_projections=p, generator=make_generator(cfg.device, 1))

    def floor():
        g = make_generator(cfg.device, 1)
        th = torch.randn(2, p, generator=g, device=cfg.device)
        th = th / th.norm(dim=0, keepdim=True)
        xs = (x - 0.5 * (x.mean(0) + y.mean(0))) @ th
        ys = (y - 0.5 * (x.mean(0) + y.mean(0))) @ th
        return (xs.sort(0).values - ys.sort(0).values).square().mean().sqrt()

    return Case(
        library,
        floor,
        check=lambda a, b: agree(a, b, atol=1e-4, what="SW_2 "),
        notes=f"{x.shape[0]} x {y.shape[0]} points, {p} directions, p=2",
    )


WORKLOADS = [
    Workload(
        "pf_ode_likelihood",
        "evaluation",
        "probability_flow_log_likelihood (dopri5, exact divergence) vs torchdiffeq.odeint",
        _pf_case,
    ),
    Workload("metrics_mmd_1e4", "evaluation", "metrics.mmd2, 10^4 points", _mmd_case),
    Workload(
        "metrics_energy_distance_1e4",
        "evaluation",
        "metrics.energy_distance, 10^4 points",
        _energy_case,
    ),
    Workload(
        "metrics_sliced_wasserstein_1e4",
        "evaluation",
        "metrics.sliced_wasserstein, 10^4 points, 128 directions",
        _sliced_case,
    ),
]
