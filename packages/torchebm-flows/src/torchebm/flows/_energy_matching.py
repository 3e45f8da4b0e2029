r"""Energy Matching: a scalar potential trained by a flow term plus contrastive divergence."""

from __future__ import annotations

import math
from typing import Any

import torch

from torchebm.core import (
    BaseLoss,
    BaseScheduler,
    ConstantScheduler,
    ScheduledParameter,
    TemperatureScheduler,
    expand_t_like_x,
    renamed_kwargs,
)
from torchebm.core._module import forward_kwargs
from torchebm.core.errors import (
    ConfigurationError,
    check_finite,
    check_int,
    check_non_negative,
    check_positive,
    check_probability,
)
from torchebm.flows._time_sampling import (
    TSampler,
    apply_loss_weight,
)
from torchebm.flows._utils import (
    FlowObjective,
    _has_dtensor_params,
    check_sampler_model,
    compute_flow_weight,
    conditioning_rows,
    energy_gradient,
    mean_flat,
    paired_conditioning,
    second_order_ddp,
    source_batch,
    trimmed_mean,
    weighted_mean,
    zero_multiple,
)
from torchebm.integrators import EulerMaruyamaIntegrator
from torchebm.integrators._checked import checked_inputs
from torchebm.integrators._compat_089 import Old089, accept_089_pickle
from torchebm.integrators._state import (
    autograd_ready,
    call_own_gradient,
    eager_under_compile,
    own_gradient,
)

__all__ = ["EnergyMatchingLoss"]


def _sampler_089(old: Old089) -> dict[str, Any]:
    """Override for a loss pickled whole by torchebm 0.8.9: for ``sampler=None`` it built a
    ``LangevinDynamics(model, step_size=langevin_dt)`` (Euler-Maruyama, its ``noise_scale``
    the loss's own schedules), whose chains this loss now runs itself: ``sampler=None``."""
    s = old.get("sampler")
    if type(s).__name__ != "LangevinDynamics":
        return {}
    noise = s.get_schedulers().get("noise_scale")
    default = (
        s.model is old.get("model")
        and s.clamp is None
        and type(s.integrator) is EulerMaruyamaIntegrator
        and s.step_size == old.get("langevin_dt")
        and (
            any(noise is old.get(k) for k in ("_noise_sweep", "_noise_const")) or s.noise_scale == 1
        )
    )
    return {"sampler": None} if default else {}


class EnergyMatchingLoss(FlowObjective, BaseLoss):
    r"""Energy Matching loss (Balcerak et al., 2025) for a scalar potential $V_\theta(x)$.

    **Flow term** (optimal-transport phase): pair noise and data with ``coupling``
    (exact minibatch OT by default), draw $t\sim U(0,1)$, form
    $x_t = \alpha x_1 + \sigma x_0 + \sigma_{\text{noise}}\xi$ and regress the negative
    potential gradient onto the conditional velocity, gated near the data:

    $$
    \mathcal L_{\text{flow}} = \mathbb E\big[w(t)\,\tfrac1D\|{-\nabla_x V(x_t)} - u_t\|^2\big],
    \qquad w(t) = \mathrm{clip}\big((1-t)/(1-t_c), 0, 1\big),
    $$

    $D$ the number of features of a sample (``mean_flat``: a mean, not a sum, over them).

    **Contrastive term** (equilibrium phase, only when ``lambda_cd > 0``): a fraction
    ``noise_fraction`` of negatives start from noise and run ``n_langevin_steps`` of
    Langevin dynamics $x \leftarrow x - h\nabla V + \sqrt{\epsilon_k}\sqrt{2h}\,\xi$
    with the temperature ramp $\epsilon_k$ of [`TemperatureScheduler`][torchebm.core.TemperatureScheduler]
    (deterministic transport until $\tau^*$, then up to $\epsilon_{max}$); the
    others start from data rows with constant temperature $\epsilon_{max}$. Then

    $$
    \mathcal L_{\text{CD}} = \max\Big(\lambda_{CD}\big(\overline{V(x_1)} -
    \mathrm{trimmed\_mean}(V(x^-))\big),\; -c\Big).
    $$

    Without a ``sampler`` the chains are run by this loss with
    [`EulerMaruyamaIntegrator`][torchebm.integrators.EulerMaruyamaIntegrator] (flows never imports samplers).
    A user ``sampler`` is duck-typed: ``sampler.sample(x=..., n_steps=..., model_kwargs=...,
    generator=...)``; if it has a ``noise_scale`` scheduler, it is temporarily replaced by the
    temperature schedule for each pass and restored afterwards.

    Both terms differentiate $V$ in $x$, also under ``torch.no_grad()`` or
    ``torch.inference_mode()`` (a validation pass): the value is the one of grad mode, without
    autograd history.

    The keyword-only options ``nan_policy``, ``cfg_dropout``, ``null_condition``,
    ``check_conditioning``, ``dtype`` and ``device`` are those of every loss: see
    [`BaseLoss`][torchebm.core.BaseLoss].

    Args:
        model: Scalar potential ``model(x, **model_kwargs) -> (B,)``.
        sampler: Optional sampler for the negatives (see above), built on ``model`` (or on a
            wrapper holding it): one holding none of its trainable parameters warns.
        coupling: Name or coupling instance (default ``"ot"``).
        interpolant: Name or interpolant instance (default ``"linear"``).
        sigma: Noise added to $x_t$ in the flow term (float or scheduler, >= 0).
        flow_weight_cutoff: $t_c$ of the gate (>= 1 disables gating).
        lambda_cd: Weight of the contrastive term (float or scheduler, >= 0; 0 = warm-up).
        epsilon_max: Maximum Langevin temperature.
        tau_star: Temperature ramp start $\tau^*\in[0,1)$.
        n_langevin_steps: Langevin steps per negative-phase pass.
        langevin_dt: Langevin step size $h$ (> 0).
        noise_fraction: Fraction of negatives started from noise, in ``[0, 1]``.
        cd_trim_fraction: Fraction of the highest negative energies dropped, in ``[0, 1)``
            (default 0.1, as in 0.8.9: robustness to outlying negatives). Trimming, and
            short chains started from noise, bias the contrastive term: its fixed point is
            no longer the energy whose Boltzmann law $\propto e^{-V/\epsilon_{max}}$ is the
            data's (for a quadratic $V$ it has none: the energy keeps flattening; measured
            54x the data variance at 0.1, against 1.003x with 0, chains from the data and
            no ``cd_clamp``). The flow term anchors $V$; pass 0 where the Boltzmann law of
            $V$ itself must match the data.
        cd_clamp: Floor ``-cd_clamp`` of the contrastive loss (>= 0, or ``None``).
        t_sampler: Law of the flow term's times: ``"uniform"`` (default), ``"lognormal"``
            or a callable (see `torchebm.flows.TimeSampler`).
        t_p_mean: Log-normal $\mu$. Default -1.2.
        t_p_std: Log-normal $s$. Default 1.2.
        loss_weight_fn: Optional ``t -> w(t)`` multiplying each sample's flow term.
        train_eps: Margin $\epsilon \in [0, 0.5)$ of the flow term's times: they lie in
            $[\epsilon, 1-\epsilon]$ (float or scheduler; keyword-only, as 0.8.9 took it).

    Example:
        >>> import torch.nn as nn
        >>> class Potential(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = nn.Sequential(nn.Linear(2, 32), nn.SiLU(), nn.Linear(32, 1))
        ...     def forward(self, x):
        ...         return self.net(x).squeeze(-1)
        >>> em = EnergyMatchingLoss(Potential(), lambda_cd=0.0)
        >>> em(torch.randn(64, 2)).backward()

    References:
        Balcerak et al., "Energy Matching: Unifying Flow Matching and Energy-Based Models
        for Generative Modeling", 2025.
    """

    # objects pickled whole by torchebm 0.8.9
    __setstate__ = accept_089_pickle("conditioning", _sampler_089)

    def __init__(
        self,
        model: Any,
        sampler: Any = None,
        coupling: Any = "ot",
        interpolant: Any = "linear",
        sigma: float | BaseScheduler = 0.1,
        flow_weight_cutoff: float = 0.8,
        lambda_cd: float | BaseScheduler = 2.0,
        epsilon_max: float = 0.15,
        tau_star: float = 0.8,
        n_langevin_steps: int = 200,
        langevin_dt: float = 0.01,
        noise_fraction: float = 0.5,
        cd_trim_fraction: float = 0.1,
        cd_clamp: float | None = 0.02,
        t_sampler: TSampler = "uniform",
        t_p_mean: float = -1.2,
        t_p_std: float = 1.2,
        loss_weight_fn: Any = None,
        *,
        train_eps: float | BaseScheduler = 0.0,
        cfg_dropout: float = 0.0,
        null_condition: Any = None,
        check_conditioning: bool = True,
        nan_policy: str = "raise",
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        super().__init__(**forward_kwargs(locals(), super().__init__))
        self._set_flow_parts(
            **forward_kwargs(locals(), self._set_flow_parts), default_coupling="ot"
        )
        if sampler is not None and not callable(getattr(sampler, "sample", None)):
            raise TypeError(f"sampler must have a sample(...) method, got {type(sampler).__name__}")
        check_sampler_model(self.model, sampler)
        self.sampler = sampler
        self.sigma = sigma
        self.lambda_cd = lambda_cd
        self.train_eps = train_eps
        self.flow_weight_cutoff = check_finite("flow_weight_cutoff", flow_weight_cutoff)
        self.epsilon_max = check_non_negative("epsilon_max", epsilon_max)
        self.tau_star = check_finite("tau_star", tau_star)
        if not 0.0 <= self.tau_star < 1.0:
            raise ConfigurationError(f"tau_star must be in [0, 1), got {tau_star!r}")
        self.n_langevin_steps = check_int("n_langevin_steps", n_langevin_steps, minimum=1)
        self.langevin_dt = check_positive("langevin_dt", langevin_dt)
        self.noise_fraction = check_probability("noise_fraction", noise_fraction)
        self.cd_trim_fraction = check_probability(
            "cd_trim_fraction", cd_trim_fraction, closed_right=False
        )
        self.cd_clamp = None if cd_clamp is None else check_non_negative("cd_clamp", cd_clamp)
        self._integrator = EulerMaruyamaIntegrator()
        if hasattr(self, "register_load_state_dict_pre_hook"):  # public since torch 2.5
            self.register_load_state_dict_pre_hook(_drop_089_default_sampler)

    # ------------------------------------------------------------------ schedulable
    sigma = ScheduledParameter(non_negative=True)
    """Noise level added to $x_t$ in the flow term."""

    lambda_cd = ScheduledParameter(non_negative=True)
    """Weight of the contrastive-divergence term (0 disables it)."""

    train_eps = ScheduledParameter(non_negative=True, below=0.5)
    r"""Margin of the flow term's times, drawn in $[\epsilon, 1-\epsilon]$."""

    def __repr__(self) -> str:
        return (
            f"EnergyMatchingLoss(coupling={self.coupling!r}, interpolant={self.interpolant!r}, "
            f"sigma={self.sigma}, lambda_cd={self.lambda_cd})"
        )

    # ------------------------------------------------------------------ flow term
    def _flow_terms(self, x1, x0, conditioning, generator):
        pair = self.coupling(x0, x1, generator=generator, **conditioning)
        conditioning = paired_conditioning(conditioning, pair.index, x1.shape[0])
        x0, x1c, weights = pair.x0, pair.x1, pair.weights
        b = x1c.shape[0]
        eps = self.train_eps
        t = self.time_sampler(b, eps, device=x1c.device, dtype=x1c.dtype, generator=generator)
        with checked_inputs():  # t in [0, 1]: drawn here, or checked by the time sampler
            xt, ut = self.interpolant.interpolate(x0, x1c, t)
        sigma = self.sigma
        if sigma > 0:
            xt = xt + sigma * torch.randn(
                xt.shape, generator=generator, device=xt.device, dtype=xt.dtype
            )
        # a graph through grad_x V whenever autograd is on (an eval-mode loss that is back-
        # propagated lost its flow term's parameter gradient), but for an eval pass of FSDP
        # parameters (no second order there); under no_grad, a validation pass
        train = torch.is_grad_enabled() and (self.training or not _has_dtensor_params(self.model))
        ddp = second_order_ddp(type(self).__name__, self.model) if train else None
        # grad_x V under no_grad/inference_mode too (inference tensors copied for autograd)
        with torch.inference_mode(False), torch.enable_grad(), self.autocast_context():
            xg = autograd_ready(xt).detach().requires_grad_(True)
            # eager in a compiled caller: AOTAutograd's backward cannot be differentiated again
            energy, grad = eager_under_compile(energy_gradient)(
                self.model, xg, autograd_ready(conditioning), create_graph=train
            )
        per = compute_flow_weight(t, self.flow_weight_cutoff) * mean_flat((-grad - ut).square())
        if self.loss_weight_fn is not None:
            per = per * apply_loss_weight(self.loss_weight_fn, t)
        loss = weighted_mean(per, weights)
        if ddp is not None:  # the energy offset's zero gradient for DDP
            loss = loss + zero_multiple(energy)  # (lambda_cd = 0 left the ranks unaveraged)
        return loss

    # ------------------------------------------------------------------ negatives
    def _langevin(self, x, noise_rows: torch.Tensor, conditioning, generator):
        """Run the EM chains: temperature ramp on ``noise_rows`` chains, eps_max on the rest."""
        sched = TemperatureScheduler(self.epsilon_max, self.tau_star, self.n_langevin_steps)
        const = math.sqrt(self.epsilon_max)
        model = self.model
        own = own_gradient(model)  # a DDP model's module's (DDP's forward is for training)
        conditioning = autograd_ready(conditioning)  # rows indexed under inference_mode

        def drift(z, t):
            if own is not None:  # in grad mode, as called directly (it may use autograd)
                kw = {"model_kwargs": conditioning} if conditioning else {}
                g = call_own_gradient(own, z, **kw)
            else:
                with torch.inference_mode(False), torch.enable_grad():
                    zg = autograd_ready(z).detach().requires_grad_(True)
                    g = energy_gradient(model, zg, conditioning, create_graph=False)[1]
            return -g.detach()

        step = self._integrator.step
        dt = self.langevin_dt
        is_noise = expand_t_like_x(noise_rows, x)
        with torch.no_grad():
            for _ in range(self.n_langevin_steps):
                # in the chains' dtype: two Python numbers alone would give a float32 tensor
                ns = torch.where(is_noise, x.new_tensor(sched.get_value()), const)
                x = step({"x": x}, dt, drift=drift, noise_scale=ns, generator=generator)["x"]
                sched.step()
        return x

    def _sample_with(self, sampler, x, scheduler, conditioning, generator):
        schedulers = getattr(sampler, "get_schedulers", None)
        old = schedulers().get("noise_scale") if callable(schedulers) else None
        if old is not None:
            sampler.register_scheduler("noise_scale", scheduler)
        try:
            kw: dict[str, Any] = {"x": x, "n_steps": self.n_langevin_steps, "generator": generator}
            if conditioning:
                kw["model_kwargs"] = conditioning
            with torch.no_grad():
                return sampler.sample(**kw)
        finally:
            if old is not None:
                sampler.register_scheduler("noise_scale", old)

    @renamed_kwargs(mk="conditioning")
    def negative_samples(self, x1, x0, conditioning, generator):
        """Negatives ``(B, ...)`` and their conditioning (rows in the negatives' order).

        A ``noise_fraction`` of the chains start from noise, the rest from distinct random
        data rows (drawn without replacement, as in torchebm 0.8.9).

        Args:
            x1: Data batch `(B, *event)`.
            x0: Source samples shaped like ``x1`` for the noise-started chains, or ``None``
                (standard normal noise).
            conditioning: Model keywords; its per-sample values (tensors or arrays with ``B``
                leading rows, lists of ``B`` items, also inside dicts and tuples) follow
                their chains.
            generator: Source of the start points and of the sampler's noise.
        """
        b = x1.shape[0]
        n_noise = int(round(b * self.noise_fraction))
        dev = x1.device
        perm = torch.randperm(b, generator=generator, device=dev)
        noise_idx = perm[:n_noise]
        # distinct data rows, as in 0.8.9 (drawn with replacement, a batch held duplicates)
        data_idx = torch.randperm(b, generator=generator, device=dev)[: b - n_noise]
        if x0 is not None:
            start_noise = x0[noise_idx]
        else:
            start_noise = torch.randn(
                (n_noise, *x1.shape[1:]), generator=generator, device=dev, dtype=x1.dtype
            )
        start = torch.cat([start_noise, x1[data_idx]]).detach()
        # chain i runs under the conditioning of the row it started from: every per-sample
        # value (tensor, array, list of prompts, inside dicts/tuples) follows the chains
        chain_rows = torch.cat([noise_idx, data_idx])
        neg_mk = {k: conditioning_rows(k, v, chain_rows, b) for k, v in conditioning.items()}
        noise_rows = torch.arange(b, device=dev) < n_noise
        if self.sampler is None:
            neg = self._langevin(start, noise_rows, neg_mk, generator)
        else:
            parts = []
            ramp = TemperatureScheduler(self.epsilon_max, self.tau_star, self.n_langevin_steps)
            const = ConstantScheduler(math.sqrt(self.epsilon_max))
            for rows, sched in ((noise_rows, ramp), (~noise_rows, const)):
                if not bool(rows.any()):
                    continue
                sub = rows.nonzero().flatten()  # the chains of this part, in order
                sub_mk = {k: conditioning_rows(k, v, sub, b) for k, v in neg_mk.items()}
                parts.append(self._sample_with(self.sampler, start[rows], sched, sub_mk, generator))
            neg = torch.cat(parts)
        return neg.detach(), neg_mk

    # ------------------------------------------------------------------ API
    def training_losses(
        self,
        x1: torch.Tensor,
        model_kwargs: dict | None = None,
        x0: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """Flow, contrastive and total loss terms (scalars) for the data batch ``x1``.

        Args:
            x1: Data batch `(B, *event)`.
            model_kwargs: Conditioning of the model, or ``None``.
            x0: Source samples shaped like ``x1`` (default: standard normal noise).
            generator: Source of the noise, times and negatives' randomness.

        Returns:
            Dict with ``flow_loss``, ``cd_loss``, ``loss`` and, when the contrastive term is
            active, ``cd_value`` (before weighting/clamping), ``negatives`` (noise-started
            chains first, then data-started ones: not in the batch's row order) and
            ``negatives_model_kwargs``, the conditioning they were sampled under (its
            per-sample values in the negatives' order).
        """
        conditioning = model_kwargs or {}
        if self.training and torch.is_grad_enabled() and _has_dtensor_params(self.model):
            raise RuntimeError(
                "EnergyMatchingLoss trains through grad_x V (second-order autograd), which is "
                "unsupported with FSDP/DTensor parameters"
            )
        noise = source_batch(x1, x0, generator)
        if x0 is not None:
            x0 = noise
        flow_loss = self._flow_terms(x1, noise, conditioning, generator)
        terms: dict[str, Any] = {"flow_loss": flow_loss}
        lam = self.lambda_cd
        if lam > 0:
            neg, neg_mk = self.negative_samples(x1, x0, conditioning, generator)
            with self.autocast_context():
                e_pos = self.model(x1, **conditioning) if conditioning else self.model(x1)
                e_neg = self.model(neg, **neg_mk) if neg_mk else self.model(neg)
            cd_value = _cd_value(e_pos, e_neg, self.cd_trim_fraction, flow_loss.dtype)
            cd_loss = lam * cd_value
            if self.cd_clamp is not None:
                cd_loss = cd_loss.clamp(min=-self.cd_clamp)
            terms.update(cd_value=cd_value.detach(), negatives=neg, negatives_model_kwargs=neg_mk)
        else:
            cd_loss = torch.zeros((), device=x1.device, dtype=flow_loss.dtype)
        terms["cd_loss"] = cd_loss
        terms["loss"] = flow_loss + cd_loss
        return terms

    def compute_loss(self, x, x0=None, model_kwargs=None, generator=None) -> torch.Tensor:
        """Total scalar loss ``flow_loss + cd_loss``.

        Args:
            x: Data batch $x_1$ `(B, *event)`.
            x0: Source samples shaped like ``x`` (default: standard normal noise).
            model_kwargs: Conditioning of the model, or ``None``.
            generator: Source of the noise, times and negatives' randomness.
        """
        return self.training_losses(x, model_kwargs=model_kwargs, x0=x0, generator=generator)[
            "loss"
        ]


def _cd_value(
    e_pos: torch.Tensor, e_neg: torch.Tensor, trim: float, flow_dtype: torch.dtype
) -> torch.Tensor:
    r"""$\overline{V(x_1)} - \mathrm{trimmed\_mean}(V(x^-))$ in the dtype of the total loss
    (``flow_dtype`` and the energies' dtypes promoted).

    Reduced in float32 at least and about a detached anchor, the mean positive energy: a
    large common offset of the energies (free in an EBM) cancels exactly in ``e - anchor``
    rather than in the difference of two rounded means. Reduced in the energies' dtype, a
    bfloat16 output (autocast) rounded each mean to 8 bits (35% off at energies near 100)
    and float32 energies offset by 1e6 were 11% off (the whole value beyond 1e7).

    Args:
        e_pos: Energies of the data `(B,)`.
        e_neg: Energies of the negatives `(B,)`.
        trim: Fraction of the highest negative energies dropped (`trimmed_mean`).
        flow_dtype: Dtype of the flow term.
    """
    dtype = torch.promote_types(e_pos.dtype, e_neg.dtype)
    acc = torch.promote_types(dtype, torch.float32)
    e_pos, e_neg = e_pos.to(acc), e_neg.to(acc)
    anchor = e_pos.detach().mean()
    value = (e_pos - anchor).mean() - trimmed_mean(e_neg - anchor, trim)
    return value.to(torch.promote_types(flow_dtype, dtype))


def _drop_089_default_sampler(module: Any, state_dict: dict, prefix: str, *_: Any) -> None:
    """Load pre-hook: for ``sampler=None`` torchebm 0.8.9 built and registered a
    ``LangevinDynamics`` (keys ``sampler.model.*``, a second copy of ``model.*``, and its
    tableau ``sampler.integrator._buf_*``); this loss runs those chains itself, so without a
    sampler the keys are dropped and a strict load of a 0.8.9 checkpoint succeeds."""
    if module.sampler is None:
        for key in [k for k in state_dict if k.startswith(prefix + "sampler.")]:
            del state_dict[key]
