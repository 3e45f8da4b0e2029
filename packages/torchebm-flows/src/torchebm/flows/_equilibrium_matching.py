r"""Equilibrium Matching (EqM): learn a time-invariant equilibrium gradient field."""

from __future__ import annotations

import enum
from typing import Any

import torch

from torchebm.core import BaseLoss, BaseScheduler, ScheduledParameter, expand_t_like_x, warn_once
from torchebm.core._module import forward_kwargs, warn_user
from torchebm.core.errors import (
    ConfigurationError,
    ShapeError,
    check_finite,
    check_in,
    check_non_negative,
)
from torchebm.flows._time_sampling import (
    TSampler,
    apply_loss_weight,
)
from torchebm.flows._utils import (
    FIELD_CALL,
    FlowObjective,
    _has_dtensor_params,
    compute_eqm_ct,
    dispersive_loss,
    mean_flat,
    paired_conditioning,
    second_order_ddp,
    source_batch,
    split_model_output,
    twice_differentiable,
)
from torchebm.integrators._checked import checked_inputs
from torchebm.integrators._state import autograd_grad, autograd_ready, eager_under_compile

__all__ = ["EquilibriumMatchingLoss"]

_PREDICTIONS = ("velocity", "score", "noise")
_ENERGY_TYPES = ("none", "dot", "mean", "l2")
_LOSS_WEIGHTS = (None, "velocity", "likelihood")
_CT_FAMILIES = ("truncated", "linear", "constant")


def _unused_options(
    loss: EquilibriumMatchingLoss, threshold_set: bool, multiplier_set: bool, ct_set: bool
) -> list[str]:
    """The options ``loss`` was given that its other choices leave without effect."""
    unused, velocity = [], loss.prediction == "velocity"
    if loss.loss_weight is not None and velocity:
        unused.append(f"loss_weight={loss.loss_weight!r} weights only prediction='noise'/'score'")
    if not velocity and (threshold_set or multiplier_set or ct_set):
        unused.append("ct, ct_multiplier and ct_threshold shape only prediction='velocity'")
    elif threshold_set and loss.ct != "truncated":
        unused.append(f"ct_threshold={loss.ct_threshold} is read only by ct='truncated'")
    if loss.dispersion_weight != 0.5 and not loss.apply_dispersion:
        unused.append("dispersion_weight is read only with apply_dispersion=True")
    return unused


def _model_time_089(model_time: str) -> bool:
    """torchebm 0.8.x ``model_time`` ("zero"/"true") as ``time_invariant``, with one warning."""
    check_in("model_time", model_time, ("zero", "true"))
    warn_once(
        "EquilibriumMatchingLoss.model_time",
        "EquilibriumMatchingLoss(model_time=...) is deprecated; pass time_invariant=True "
        "('zero') or time_invariant=False ('true')",
        DeprecationWarning,
    )
    return model_time == "zero"


class EquilibriumMatchingLoss(FlowObjective, BaseLoss):
    r"""Equilibrium Matching loss (Wang & Du, 2025).

    For data $x_1$, noise $x_0$ (optionally re-paired by ``coupling``),
    $t \sim U[\epsilon, 1-\epsilon]$ and the interpolant
    $(x_t, u_t)$ ($u_t = \dot\alpha x_1 + \dot\sigma x_0$), the model learns the
    *time-invariant* field

    $$
    f(x_t) \approx -\,c(t)\,u_t, \qquad c(t) = \lambda\min\big(1, (1-t)/(1-a)\big)
    $$

    (``compute_eqm_ct``): the target points from data to noise and vanishes at $t = 1$
    ($c(1) = 0$), so for data in clusters that are narrow against their spacing the optimal
    field nearly vanishes there and data points are equilibria of the gradient descent
    $x \leftarrow x - \eta f(x)$. Elsewhere the optimum averages the targets of every $t$
    whose $x_t$ reaches $x$: it need not vanish at the data, and its equilibria need not
    follow the data law. By quadrature, with the default $c(t)$: $|f|$ at data points of
    eight Gaussians (std 0.02 on a circle of radius 2) has median 0.27 (5-95 %: 0.06 to
    0.75, larger in the tails), 0.9 on average for $\mathcal N(0, I_3)$ data, 0.9 to 4.1 on
    two moons (descent then drifts along the moons), and on the unit circle its radial part
    vanishes at $r \approx 0.87$, not 1.

    ``prediction="velocity"`` with

    * ``energy_type="none"`` (implicit EqM): $\ell = \|f(x_t) - \text{target}\|^2$
      (mean over features);
    * ``"dot"`` / ``"mean"`` (identical): explicit energy $g(x) = \sum x\cdot f(x)$;
      ``"l2"``: $g = -\tfrac12\|f(x)\|^2$; the field is $\nabla_x g$ (autograd,
      differentiable in training; also computed under ``torch.no_grad()`` or
      ``torch.inference_mode()``, a validation pass) and
      $\ell = \|\nabla g - \text{target}\|^2$; the energy is returned as ``terms["energy"]``.
      With ``"l2"`` a network whose output layer starts at zero (`DiT`'s adaLN-zero) sits
      on a stationary point: $\nabla g = -J_f^\top f = 0$ and the loss's parameter
      gradient is exactly 0 there (initialise the output layer off zero, or use ``"dot"``).

    ``prediction="noise"``: $\ell = w\|f - x_0\|^2$; ``"score"``:
    $\ell = w\|\sigma_t f + x_0\|^2$ with $w = (B_v/\sigma)^2$
    (``loss_weight="velocity"``), $B_v/\sigma^2$ (``"likelihood"``) or 1. These
    diffusion-style objectives need the time, so use ``time_invariant=False`` with them.

    ``model(x_t, t, **model_kwargs)`` returns the field (shaped like ``x``) or a tuple
    ``(field, activations)``; with ``apply_dispersion`` the dispersive loss of the last
    activation is added with weight ``dispersion_weight`` (a model that returns no
    activations is then a `ConfigurationError`). With ``time_invariant`` (default)
    the model receives ``t = 0``.

    The keyword-only options ``nan_policy``, ``cfg_dropout``, ``null_condition``,
    ``check_conditioning``, ``dtype`` and ``device`` are those of every loss: see
    [`BaseLoss`][torchebm.core.BaseLoss].

    Args:
        model: Field network ``model(x, t, **model_kwargs)``.
        prediction: ``"velocity"`` (EqM), ``"score"`` or ``"noise"`` (or a
            `torchebm.samplers.PredictionType`).
        energy_type: ``"none"``, ``"dot"``, ``"mean"`` or ``"l2"`` (velocity prediction only).
        interpolant: Name or [`BaseInterpolant`][torchebm.core.BaseInterpolant] (default linear).
        coupling: Name or [`BaseCoupling`][torchebm.core.BaseCoupling] (default independent); its
            ``weights`` (if any) weight the batch mean.
        loss_weight: ``None``, ``"velocity"`` or ``"likelihood"`` (score/noise predictions;
            unbounded near the ends of the path: pass ``train_eps``, which SiT sets to 1e-3,
            1e-5 on the VP path; with 0 the loss warns).
        train_eps: Time margin $\epsilon$ (float or scheduler, ``[0, 0.5)``).
        ct_threshold: $a$ of $c(t)$.
        ct_multiplier: $\lambda$ of $c(t)$.
        apply_dispersion: Add the dispersive regulariser on the model's activations.
        dispersion_weight: Its weight.
        time_invariant: Feed ``t = 0`` to the model (EqM); ``False`` feeds the true ``t``.
        t_sampler: Law of the training times: ``"uniform"`` (default), ``"lognormal"`` or a
            callable (see `torchebm.flows.TimeSampler`).
        t_p_mean: Log-normal $\mu$. Default -1.2.
        t_p_std: Log-normal $s$. Default 1.2.
        loss_weight_fn: Optional ``t -> w(t)`` multiplying each sample's loss.
        ct: Family of $c(t)$ (times ``ct_multiplier``): ``"truncated"`` (default,
            $\min(1, (1-t)/(1-a))$), ``"linear"`` ($1 - t$), ``"constant"`` ($1$) or a
            callable ``t -> c(t)`` from the times ``(B,)`` to a tensor of shape ``(B,)``,
            ``(B, 1, ...)`` or ``()`` (one value for the batch; else `ShapeError`).
        model_time: Deprecated 0.8.x spelling of ``time_invariant`` (``"zero"`` / ``"true"``).

    Example:
        >>> import torch.nn as nn
        >>> class Field(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = nn.Linear(2, 2)
        ...     def forward(self, x, t):
        ...         return self.net(x)
        >>> eqm = EquilibriumMatchingLoss(Field())
        >>> loss = eqm(torch.randn(64, 2))
        >>> loss.backward()

    References:
        Wang & Du, "Equilibrium Matching: Generative Modeling with Implicit Energy-Based
        Models", 2025.
    """

    _model_call = FIELD_CALL  # model(x, t, **model_kwargs)
    _retired_hooks = {
        **FlowObjective._retired_hooks,
        "_compute_ct": "pass `ct=`, a callable `t -> c(t)`",
        "_compute_explicit_energy_gradient": "choose it with `energy_type=`",
        "_reduce_dims": "the loss reduces over the event dimensions itself",
    }

    def __init__(
        self,
        model: Any,
        prediction: str | enum.Enum = "velocity",
        energy_type: str = "none",
        interpolant: Any = "linear",
        coupling: Any = None,
        loss_weight: str | None = None,
        train_eps: float | BaseScheduler = 0.0,
        ct_threshold: float = 0.8,
        ct_multiplier: float = 4.0,
        apply_dispersion: bool = False,
        dispersion_weight: float = 0.5,
        time_invariant: bool = True,
        *,
        t_sampler: TSampler = "uniform",
        t_p_mean: float = -1.2,
        t_p_std: float = 1.2,
        loss_weight_fn: Any = None,
        ct: Any = "truncated",
        model_time: str | None = None,
        cfg_dropout: float = 0.0,
        null_condition: Any = None,
        check_conditioning: bool = True,
        nan_policy: str = "raise",
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        super().__init__(**forward_kwargs(locals(), super().__init__))
        self._set_flow_parts(
            **forward_kwargs(locals(), self._set_flow_parts), default_coupling="independent"
        )
        if isinstance(prediction, enum.Enum):  # torchebm.samplers.PredictionType
            prediction = prediction.name.lower()
        self.prediction = check_in("prediction", prediction, _PREDICTIONS)
        self.energy_type = check_in("energy_type", energy_type, _ENERGY_TYPES)
        self.loss_weight = check_in("loss_weight", loss_weight, _LOSS_WEIGHTS)
        self.train_eps = train_eps
        self.ct_threshold = check_finite("ct_threshold", ct_threshold)
        self.ct_multiplier = check_non_negative("ct_multiplier", ct_multiplier)
        for name, flag in (
            ("apply_dispersion", apply_dispersion),
            ("time_invariant", time_invariant),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        self.apply_dispersion = apply_dispersion
        self.dispersion_weight = check_non_negative("dispersion_weight", dispersion_weight)
        self.time_invariant = time_invariant
        if not callable(ct):
            check_in("ct", ct, _CT_FAMILIES)
        self.ct = ct
        if model_time is not None:
            self.time_invariant = _model_time_089(model_time)
        if prediction != "velocity" and self.time_invariant:
            warn_user(
                f"prediction={prediction!r} regresses a time-dependent target but "
                "time_invariant=True feeds t=0 to the model; pass time_invariant=False"
            )
        if prediction != "velocity" and energy_type != "none":
            raise ConfigurationError(
                f"energy_type={energy_type!r} requires prediction='velocity', got {prediction!r}"
            )
        unused = _unused_options(self, ct_threshold != 0.8, ct_multiplier != 4.0, ct != "truncated")
        if unused:
            warn_user(f"EquilibriumMatchingLoss: options without effect here: {'; '.join(unused)}")
        diffusion_weight = loss_weight is not None and prediction != "velocity"
        if diffusion_weight and train_eps == 0 and not callable(t_sampler):  # a callable: theirs
            warn_user(
                f"EquilibriumMatchingLoss: loss_weight={loss_weight!r} with train_eps=0 weights "
                "times near the ends of the path without bound (on the linear path 'velocity' "
                "is 1/t^2, 1e8 at t = 1e-4, and 'likelihood' 1e4 at both t = 1e-4 and 1 - 1e-4; "
                "one batch loss of 100 reached 1,400x their median); SiT trains these with "
                "train_eps=1e-3 (1e-5 on the VP path)"
            )

    # ------------------------------------------------------------------ schedulable
    train_eps = ScheduledParameter(non_negative=True, below=0.5)
    """Time margin: $t \\sim U[\\epsilon, 1 - \\epsilon]$."""

    def __repr__(self) -> str:
        return (
            f"EquilibriumMatchingLoss(prediction={self.prediction!r}, energy_type="
            f"{self.energy_type!r}, interpolant={self.interpolant!r}, coupling={self.coupling!r})"
        )

    # ------------------------------------------------------------------ core
    def _call_model(self, x, t, conditioning):
        model = self.model
        if self.use_mixed_precision:
            with self.autocast_context():
                out = model(x, t, **conditioning) if conditioning else model(x, t)
        else:
            out = model(x, t, **conditioning) if conditioning else model(x, t)
        return split_model_output(out, like=x)

    def training_losses(
        self,
        x1: torch.Tensor,
        model_kwargs: dict | None = None,
        x0: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """Per-sample EqM terms.

        Args:
            x1: Data ``(B, *event_shape)`` (already on the loss's device/dtype).
            model_kwargs: Normalised conditioning.
            x0: Optional noise of the same shape (default: ``randn`` from ``generator``).
            generator: Source of the noise, the times and the coupling's randomness.

        Returns:
            Dict with ``loss`` ``(B,)``, ``pred`` (the field compared with ``target``: for
            an explicit energy its gradient field, not the raw model output), ``target``,
            ``t``, ``weights`` (coupling weights or ``None``), ``elementwise`` (the
            per-element loss whose per-sample mean is ``loss``; ``None`` when ``loss`` adds a
            dispersion term or a ``loss_weight_fn``) and, for explicit energies, ``energy``
            ``(B,)``.
        """
        conditioning = model_kwargs or {}
        x0 = source_batch(x1, x0, generator)
        pair = self.coupling(x0, x1, generator=generator, **conditioning)
        conditioning = paired_conditioning(conditioning, pair.index, x1.shape[0])
        x0, x1, weights = pair.x0, pair.x1, pair.weights
        b = x1.shape[0]
        t = self.time_sampler(
            b, self.train_eps, device=x1.device, dtype=x1.dtype, generator=generator
        )
        with checked_inputs():  # t in [0, 1]: drawn here, or checked by the time sampler
            xt, ut = self.interpolant.interpolate(x0, x1, t)
        t_model = torch.zeros_like(t) if self.time_invariant else t
        terms: dict[str, Any] = {"t": t, "weights": weights}

        if self.prediction == "velocity":
            target = ut * expand_t_like_x(self._ct(t, -1.0), x1)  # -c(t) u_t
            if self.energy_type == "none":
                pred, act = self._call_model(xt, t_model, conditioning)
            else:
                pred, act, energy = eager_under_compile(self._explicit_field)(
                    xt, t_model, conditioning
                )
                terms["energy"] = energy
            elementwise = (pred - target).square()
        else:
            pred, act = self._call_model(xt, t_model, conditioning)
            tb = expand_t_like_x(t, x1)
            sigma, _ = self.interpolant.compute_sigma_t(tb)
            w: float | torch.Tensor
            if self.loss_weight is None:
                w = 1.0
            else:
                with checked_inputs():
                    _, bv = self.interpolant.compute_drift(xt, t)
                w = (bv / sigma).square() if self.loss_weight == "velocity" else bv / sigma.square()
            if self.prediction == "noise":
                elementwise = w * (pred - x0).square()
                target = x0
            else:
                elementwise = w * (pred * sigma + x0).square()
                target = -x0 / sigma
        loss = mean_flat(elementwise)
        if self.apply_dispersion:
            loss = loss + self.dispersion_weight * self._dispersion(act)
            elementwise = None
        if self.loss_weight_fn is not None:
            loss = loss * apply_loss_weight(self.loss_weight_fn, t)
            elementwise = None
        terms.update(loss=loss, pred=pred, target=target, elementwise=elementwise)
        return terms

    def _dispersion(self, act: Any) -> torch.Tensor:
        """`dispersive_loss` of the last activation the model returned.

        Raises:
            ConfigurationError: the model returned no activations (a bare field), so the
                ``apply_dispersion`` the loss was built with has nothing to act on.
        """
        if isinstance(act, (list, tuple)):
            act = act[-1] if len(act) > 0 else None
        if act is None:
            raise ConfigurationError(
                "apply_dispersion=True needs a model that returns (field, activations); "
                "this model returned no activations: return them, or pass "
                "apply_dispersion=False"
            )
        return dispersive_loss(act)

    def _ct(self, t: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
        """$c(t)$ of the chosen family, times ``sign * ct_multiplier`` (a sign folded into
        the multiplier is exact: $-(c m) = c(-m)$ in floating point)."""
        m = sign * self.ct_multiplier
        if self.ct == "truncated":
            return compute_eqm_ct(t, self.ct_threshold, m)
        if self.ct == "linear":
            return (1.0 - t) * m
        if self.ct == "constant":
            return torch.full_like(t, m)
        c = self.ct(t)
        per_sample = isinstance(c, torch.Tensor) and c.numel() == t.numel() and c.ndim >= 1
        scalar = isinstance(c, torch.Tensor) and c.shape == ()  # numpy's () shape: refused
        if not (per_sample and c.shape[0] == t.shape[0]) and not scalar:
            got = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
            raise ShapeError(
                f"ct(t) must return a tensor of shape () or {tuple(t.shape)} (or (B, 1, ...)), "
                f"got {got}"
            )
        return (c.expand(t.shape) if c.ndim == 0 else c.reshape(t.shape)) * m

    def _explicit_field(self, xt, t_model, conditioning):
        if self.training and torch.is_grad_enabled() and _has_dtensor_params(self.model):
            raise RuntimeError(
                "EquilibriumMatchingLoss: explicit energies need second-order autograd, which "
                "is unsupported with FSDP/DTensor parameters; use energy_type='none'"
            )
        # the objective is the same with autograd off (a validation pass, no_grad or
        # inference_mode, whose tensors are copied for autograd): grad_x g is computed
        # either way, differentiable in the parameters whenever autograd is on (in eval
        # mode too: a back-propagated eval-mode loss lost that gradient; not for an eval
        # pass of FSDP parameters, which have no second order)
        train = torch.is_grad_enabled() and (self.training or not _has_dtensor_params(self.model))
        if train:  # (DDP needs no zero multiple here: every parameter shapes the field)
            second_order_ddp(type(self).__name__, self.model)
        with torch.inference_mode(False), torch.enable_grad():
            xg = autograd_ready(xt).detach().requires_grad_(True)
            with twice_differentiable(train):
                f, act = self._call_model(xg, autograd_ready(t_model), autograd_ready(conditioning))
            energy = self._energy(xg, f)
            (grad,) = autograd_grad(energy.sum(), xg, create_graph=train)
        if not torch.is_grad_enabled():
            return grad, act, energy.detach()
        return grad, act, energy

    def _energy(self, x, f):
        if self.energy_type == "l2":
            return -0.5 * f.reshape(f.shape[0], -1).square().sum(1)
        return (x * f).reshape(x.shape[0], -1).sum(1)

    def probe_model(self, x: torch.Tensor, model_kwargs: dict) -> torch.Tensor:
        """The field at $t = 0$ on ``x`` under ``model_kwargs`` (the conditioning check).

        Args:
            x: Probe inputs `(B, *event)`.
            model_kwargs: Conditioning keywords of the model.
        """
        return self._call_model(x, x.new_zeros(x.shape[0]), model_kwargs)[0]
