"""Loss workloads: one training step (loss, backward, SGD step) of every objective.

The library side runs ``loss_fn(x)`` on ``MLPEnergy`` / ``MLPVelocity``; the floor runs the
same objective written by hand on a copy of the same weights (``_nets.HandMLP``), drawing
the same random numbers in the same order, so the first losses agree to rounding.
"""

from __future__ import annotations

import math

import torch
from _harness import Case, Config, Workload
from _nets import HandMLP, HandVelocity, agree, make_generator, mixture_data
from _ot import auction, normalised_cost

__all__ = ["WORKLOADS"]

LR = 1e-3
ETA = 0.01  # Langevin step of the negative phases


def _energy_pair(cfg: Config):
    from torchebm.models import MLPEnergy

    torch.manual_seed(cfg.seed)
    model = MLPEnergy(2, (64, 64), "silu").to(cfg.device)
    hand = HandMLP(model.net)
    return model, hand


def _train_case(cfg: Config, loss_fn, params, floor_loss, batch: int, notes: str = "") -> Case:
    """Wrap ``loss_fn(x)`` and ``floor_loss(x, gen)`` into SGD training steps.

    Each side returns ``(loss, [param.grad, ...])``: the gradient tensors are the ones the
    step used (``zero_grad(set_to_none=True)`` of the next call leaves them alone), so the
    check compares the loss and every parameter gradient at no timing cost.
    """
    dev = cfg.device
    x = mixture_data(batch, dev)
    gen = make_generator(dev)
    lib_params, hand_params = list(params[0]), list(params[1])
    opt = torch.optim.SGD(lib_params, lr=LR)
    hand_opt = torch.optim.SGD(hand_params, lr=LR)

    def library():
        gen.manual_seed(cfg.seed)
        opt.zero_grad(set_to_none=True)
        out = loss_fn(x, generator=gen)
        loss = out[0] if isinstance(out, tuple) else out
        loss.backward()
        opt.step()
        return loss.detach(), [p.grad for p in lib_params]

    def floor():
        gen.manual_seed(cfg.seed)
        hand_opt.zero_grad(set_to_none=True)
        loss = floor_loss(x, gen)
        loss.backward()
        hand_opt.step()
        return loss.detach(), [p.grad for p in hand_params]

    return Case(library, floor, check=check_step, notes=notes or f"batch {batch}")


def check_step(lib, floor, tol: float = 1e-4) -> str:
    """Loss and every parameter gradient of library and floor agree (``AssertionError``)."""
    (loss_a, grads_a), (loss_b, grads_b) = lib, floor
    note = agree(loss_a, loss_b, atol=tol, rtol=tol, what="loss ")
    if len(grads_a) != len(grads_b):
        raise AssertionError(f"{len(grads_a)} library parameters vs {len(grads_b)} in the floor")
    worst = 0.0
    for i, (ga, gb) in enumerate(zip(grads_a, grads_b)):
        if ga is None and gb is None:  # a parameter the loss does not reach (no gradient)
            continue
        if ga is None or gb is None:
            raise AssertionError(f"parameter {i} has a gradient on one side only")
        scale = float(gb.abs().max()) or 1.0  # relative to the tensor's largest entry
        agree(ga / scale, gb / scale, atol=tol, what=f"grad of parameter {i}: ")
        worst = max(worst, float((ga - gb).abs().max()) / scale)
    return f"{note}, grads max|d|/max|g|={worst:.1e}"


def _langevin_(hand, x: torch.Tensor, steps: int, gen, amp) -> torch.Tensor:
    """In-place Langevin on ``x``: ``x -= eta grad E + amp xi`` (``amp`` float or (B, 1))."""
    noise = torch.empty_like(x)
    with torch.no_grad():
        for k in range(steps):
            x.add_(hand.grad(x), alpha=-ETA)  # explicit backward, as MLPEnergy.gradient
            a = amp(k) if callable(amp) else amp
            if isinstance(a, torch.Tensor):
                x.addcmul_(noise.normal_(generator=gen), a)
            else:
                x.add_(noise.normal_(generator=gen), alpha=a)
    return x


# ----------------------------------------------------------------------------- CD / PCD
def _cd_case(cfg: Config, persistent: bool) -> Case:
    from torchebm.losses import ContrastiveDivergence, PersistentContrastiveDivergence
    from torchebm.samplers import LangevinDynamics

    batch, k, reg = 256, 10, 0.001
    model, hand = _energy_pair(cfg)
    # eager: on CUDA backend="auto" runs the fused kernel with its own random numbers (timed
    # in the cuda group); the eager update draws the floor's noise (on CPU "auto" is eager)
    sampler = LangevinDynamics(model, step_size=ETA, noise_scale=1.0, backend="eager")
    amp = math.sqrt(2 * ETA)
    if not persistent:
        loss_fn = ContrastiveDivergence(model, sampler, k_steps=k, energy_reg_weight=reg)
        buf = None
    else:
        size, ratio = 10_000, 0.05
        loss_fn = PersistentContrastiveDivergence(
            model,
            sampler,
            k_steps=k,
            buffer_size=size,
            new_sample_ratio=ratio,
            energy_reg_weight=reg,
        )
        loss_fn.initialize_buffer((2,), generator=make_generator(cfg.device, cfg.seed + 1))
        buf = loss_fn.replay_buffer.clone()
        ptr = [0]
        bounds = torch.arange(batch + 1, device=cfg.device) * size // batch
        strata = (bounds[:-1], bounds[1:] - bounds[:-1])

    def floor_loss(x, gen):
        if buf is None:
            neg = x.clone()  # CD-k starts the chains at the data
        else:  # one uniform row of each of n strata covering the buffer (widths size // n
            # or one more), a fraction restarted from fresh noise
            n = x.shape[0]
            lo, width = strata
            u = torch.rand(n, generator=gen, device=x.device)
            idx = lo + torch.minimum((u * width).long(), width - 1)
            fresh = torch.rand(n, generator=gen, device=x.device) < ratio
            noise = torch.randn((n, 2), generator=gen, device=x.device)
            neg = torch.where(fresh[:, None], noise, buf[idx])
        neg = _langevin_(hand, neg, k, gen, amp)
        if buf is not None:  # FIFO write-back
            p, n = ptr[0], neg.shape[0]
            first = min(n, size - p)
            buf[p : p + first] = neg[:first]
            buf[: n - first] = neg[first:]
            ptr[0] = (p + n) % size
        e_pos, e_neg = hand(x), hand(neg)
        return e_pos.mean() - e_neg.mean() + reg * (e_pos.square().mean() + e_neg.square().mean())

    return _train_case(
        cfg,
        loss_fn,
        (model.parameters(), hand.params),
        floor_loss,
        batch,
        notes=f"batch {batch}, k={k}"
        + (", buffer 10000" if persistent else "")
        + "; floor sampler grad: explicit backward",
    )


# ----------------------------------------------------------------------------- score matching
def _sm_case(cfg: Config, kind: str) -> Case:
    from torchebm.losses import DenoisingScoreMatching, ScoreMatching, SlicedScoreMatching

    batch, n_proj, sigma = 1024, 5, 0.1
    model, hand = _energy_pair(cfg)
    if kind == "exact":
        loss_fn = ScoreMatching(model, hessian_method="exact")
    elif kind == "sliced":
        loss_fn = SlicedScoreMatching(model, n_projections=n_proj, projection_type="rademacher")
    else:
        loss_fn = DenoisingScoreMatching(model, noise_scale=sigma)

    def grad_of(x):
        return torch.autograd.grad(hand(x).sum(), x, create_graph=True)[0]

    def floor_loss(x, gen):
        if kind == "exact":  # 1/2 |grad E|^2 - tr(Hess E), trace by one backward per dim
            xg = x.detach().requires_grad_(True)
            g = grad_of(xg)
            trace = sum(
                torch.autograd.grad(g[:, d].sum(), xg, create_graph=True)[0][:, d]
                for d in range(x.shape[1])
            )
            return (0.5 * g.square().sum(1) - trace).mean()
        if kind == "sliced":  # 1/2 (v.g)^2 - v.H.v with Rademacher v, batch tiled n_proj times
            xr = x.detach().repeat(n_proj, 1).requires_grad_(True)
            v = torch.randint(0, 2, xr.shape, generator=gen, device=x.device).to(x.dtype) * 2 - 1
            g = grad_of(xr)
            vg = (v * g).sum(1)
            hv = torch.autograd.grad(vg.sum(), xr, create_graph=True)[0]
            return (0.5 * vg.square() - (v * hv).sum(1)).mean()
        noise = sigma * torch.randn(x.shape, generator=gen, device=x.device)
        g = grad_of((x + noise).requires_grad_(True))
        return 0.5 * (g - noise / sigma**2).square().sum(1).mean()

    notes = f"batch {batch}" + (f", {n_proj} projections" if kind == "sliced" else "")
    return _train_case(cfg, loss_fn, (model.parameters(), hand.params), floor_loss, batch, notes)


# ----------------------------------------------------------------------------- EqM
def _eqm_case(cfg: Config) -> Case:
    from torchebm.losses import EquilibriumMatchingLoss
    from torchebm.models import MLPVelocity

    batch = 1024
    torch.manual_seed(cfg.seed)
    field = MLPVelocity(2, (64, 64), "silu").to(cfg.device)
    hand = HandVelocity(field.net, 4)
    loss_fn = EquilibriumMatchingLoss(field)  # implicit EqM, linear path, independent coupling

    def floor_loss(x1, gen):
        x0 = torch.randn(x1.shape, generator=gen, device=x1.device)
        t = torch.rand(x1.shape[0], generator=gen, device=x1.device)
        tc = t[:, None]
        xt = x1 * tc + x0 * (1 - tc)
        ct = 4.0 * ((1 - tc) / 0.2).clamp(max=1.0)  # c(t): 4 up to t = 0.8, then linear to 0
        target = (x0 - x1) * ct
        pred = hand(xt, torch.zeros_like(t))
        return (pred - target).square().mean()

    return _train_case(cfg, loss_fn, (field.parameters(), hand.params), floor_loss, batch)


# ----------------------------------------------------------------------------- Energy Matching
def _em_case(cfg: Config) -> Case:
    from torchebm.losses import EnergyMatchingLoss

    batch, n_lang = 256, cfg.size(200, 20)
    sigma, cutoff, lam, eps_max, tau, trim, clamp = 0.1, 0.8, 2.0, 0.15, 0.8, 0.1, 0.02
    model, hand = _energy_pair(cfg)
    loss_fn = EnergyMatchingLoss(
        model,
        coupling="ot",
        sigma=sigma,
        flow_weight_cutoff=cutoff,
        lambda_cd=lam,
        epsilon_max=eps_max,
        tau_star=tau,
        n_langevin_steps=n_lang,
        langevin_dt=ETA,
        noise_fraction=0.5,
        cd_trim_fraction=trim,
        cd_clamp=clamp,
    )

    def temperature(k: int) -> float:  # sqrt(eps(t)), t = k / n: 0 before tau, then a ramp
        t = min(k, n_lang) / n_lang
        eps = 0.0 if t < tau else (eps_max * (t - tau) / (1 - tau) if t < 1 else eps_max)
        return math.sqrt(eps)

    def floor_loss(x1, gen):
        dev, b = x1.device, x1.shape[0]
        x0 = torch.randn(x1.shape, generator=gen, device=dev)
        # flow term on the OT-coupled pairs: w(t) |-grad V(x_t) - (x1 - x0)|^2
        with torch.no_grad():
            x1c = x1[auction(normalised_cost(x0, x1))]
        t = torch.rand(b, generator=gen, device=dev)
        tc = t[:, None]
        xt = (x1c * tc + x0 * (1 - tc)) + sigma * torch.randn(x1.shape, generator=gen, device=dev)
        xt.requires_grad_(True)
        g = torch.autograd.grad(hand(xt).sum(), xt, create_graph=True)[0]
        w = ((1 - t) / (1 - cutoff)).clamp(0.0, 1.0)
        flow = (w * (-g - (x1c - x0)).square().mean(1)).mean()
        # negatives: half from noise on the temperature ramp, half from data at eps_max
        n_noise = round(b * 0.5)
        perm = torch.randperm(b, generator=gen, device=dev)
        data_idx = torch.randperm(b, generator=gen, device=dev)[: b - n_noise]
        start_noise = torch.randn((n_noise, 2), generator=gen, device=dev)
        neg = torch.cat([start_noise, x1[data_idx]])
        del perm  # drawn only to keep the random stream aligned with the library
        is_noise = (torch.arange(b, device=dev) < n_noise)[:, None]
        root = math.sqrt(2 * ETA)
        const = root * math.sqrt(eps_max)

        def amp(k):
            return torch.where(is_noise, root * temperature(k), const)

        neg = _langevin_(hand, neg, n_lang, gen, amp)
        e_pos, e_neg = hand(x1), hand(neg)
        kept = torch.topk(e_neg, b - int(trim * b), largest=False, sorted=False).values
        cd = (lam * (e_pos.mean() - kept.mean())).clamp(min=-clamp)
        return flow + cd

    return _train_case(
        cfg,
        loss_fn,
        (model.parameters(), hand.params),
        floor_loss,
        batch,
        notes=f"batch {batch}, exact OT, {n_lang} Langevin steps"
        + "; floor sampler grad: explicit backward",
    )


WORKLOADS = [
    Workload(
        "cd_step", "losses", "ContrastiveDivergence training step", lambda c: _cd_case(c, False)
    ),
    Workload(
        "pcd_step",
        "losses",
        "PersistentContrastiveDivergence training step",
        lambda c: _cd_case(c, True),
    ),
    Workload(
        "sm_exact_step",
        "losses",
        "ScoreMatching (exact trace) step",
        lambda c: _sm_case(c, "exact"),
    ),
    Workload("ssm_step", "losses", "SlicedScoreMatching step", lambda c: _sm_case(c, "sliced")),
    Workload("dsm_step", "losses", "DenoisingScoreMatching step", lambda c: _sm_case(c, "dsm")),
    Workload("eqm_step", "losses", "EquilibriumMatchingLoss step (MLPVelocity)", _eqm_case),
    Workload("em_step", "losses", "EnergyMatchingLoss step (OT flow term + CD)", _em_case),
]
