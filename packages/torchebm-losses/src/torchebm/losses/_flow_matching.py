r"""Flow Matching: regress the velocity of an interpolant between noise and data."""

from __future__ import annotations

from typing import Any, Callable

import torch

from torchebm.core import BaseLoss, BaseScheduler, ScheduledParameter
from torchebm.core._module import forward_kwargs
from torchebm.flows import mean_flat
from torchebm.flows._time_sampling import (
    TSampler,
    apply_loss_weight,
)
from torchebm.flows._utils import (
    FIELD_CALL,
    FlowObjective,
    paired_conditioning,
    source_batch,
    split_model_output,
)
from torchebm.integrators._checked import checked_inputs

__all__ = ["FlowMatchingLoss"]


class FlowMatchingLoss(FlowObjective, BaseLoss):
    r"""Conditional Flow Matching loss (Lipman et al. 2023; Liu et al. 2023; Tong et al. 2024).

    For data $x_1$ (shape `(B, *event)`), a source $x_0$ (standard normal unless ``x0=``
    is passed), optionally re-paired by ``coupling``, and times $t$ from ``t_sampler``,
    the interpolant gives $(x_t, u_t)$ with $u_t = \dot\alpha_t x_1 + \dot\sigma_t x_0$.
    The model ``model(x_t, t, **model_kwargs)`` regresses the velocity:

    $$ \ell = \mathbb E\, w(t)\,\big\| v_\theta(x_t, t) - s\,u_t \big\|^2 $$

    (mean over features), $s = -1$ with ``negate_velocity`` and $+1$ otherwise,
    $w$ = ``loss_weight_fn`` (or 1), batch mean weighted by the coupling's weights when it
    gives any. Integrating $\dot x = v_\theta(x, t)$ from $t = 0$ (noise) to $1$ samples the
    data (e.g. with `torchebm.samplers.FlowSampler`).

    The path has no extra Gaussian width: with the linear interpolant $(x_t, u_t)$ are
    torchcfm's ``ConditionalFlowMatcher(sigma=0)`` ($x_t = t x_1 + (1-t) x_0$,
    $u_t = x_1 - x_0$; with ``coupling="ot"`` its exact-OT variant, pairing as
    `ExactOTCoupling` says), with ``"cosine"`` its
    ``VariancePreservingConditionalFlowMatcher(sigma=0)``; its ``sigma > 0`` adds
    $\sigma\epsilon$ to $x_t$, which this loss does not.

    The keyword-only options ``nan_policy``, ``cfg_dropout``, ``null_condition``,
    ``check_conditioning``, ``dtype`` and ``device`` are those of every loss: see
    [`BaseLoss`][torchebm.core.BaseLoss].

    Args:
        model: Velocity network ``model(x, t, **model_kwargs)`` returning the shape of
            ``x`` (or a tuple whose first entry is that).
        interpolant: Name (``"linear"``, ``"cosine"``, ``"vp"``, ...) or a
            `BaseInterpolant`. Default ``"linear"``.
        coupling: Name (``"independent"``, ``"ot"``, ...), a `BaseCoupling` or ``None``
            (independent).
        train_eps: Margin $\epsilon \in [0, 0.5)$: times lie in $[\epsilon, 1-\epsilon]$
            (float or scheduler).
        t_sampler: ``"uniform"``, ``"lognormal"`` or a callable (see `TimeSampler`).
        t_p_mean: Log-normal $\mu$ (``logit t`` has mean $-\mu$). Default -1.2.
        t_p_std: Log-normal $s > 0$ (``logit t`` has std $s$). Default 1.2.
        loss_weight_fn: Optional ``t -> w(t)``, shape `(B,) -> (B,)`.
        negate_velocity: Regress $-u_t$ (models that point from data to noise). Sample such
            a model with ``FlowSampler(lambda x, t: -model(x, t))``: the sampler's own
            ``negate_velocity`` is for time-invariant EqM fields and calls the model at
            $t = 0$ (a flow trained here and sampled with it put 1.8 % of its samples on the
            modes).

    Example:
        >>> class Velocity(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = torch.nn.Linear(3, 2)
        ...     def forward(self, x, t):
        ...         return self.net(torch.cat([x, t[:, None]], dim=1))
        >>> fm = FlowMatchingLoss(Velocity(), t_sampler="lognormal")
        >>> fm(torch.randn(64, 2)).backward()

    References:
        Lipman et al., "Flow Matching for Generative Modeling", ICLR 2023.
        Liu et al., "Flow Straight and Fast: Learning to Generate and Transfer Data with
        Rectified Flow", ICLR 2023.
        Tong et al., "Improving and generalizing flow-based generative models with
        minibatch optimal transport", TMLR 2024.
    """

    _model_call = FIELD_CALL  # model(x, t, **model_kwargs)

    def __init__(
        self,
        model: Any,
        interpolant: Any = "linear",
        coupling: Any = None,
        train_eps: float | BaseScheduler = 0.0,
        t_sampler: TSampler = "uniform",
        t_p_mean: float = -1.2,
        t_p_std: float = 1.2,
        loss_weight_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        negate_velocity: bool = False,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
        *,
        cfg_dropout: float = 0.0,
        null_condition: Any = None,
        check_conditioning: bool = True,
        nan_policy: str = "raise",
    ):
        super().__init__(**forward_kwargs(locals(), super().__init__))
        self._set_flow_parts(
            **forward_kwargs(locals(), self._set_flow_parts), default_coupling="independent"
        )
        self.train_eps = train_eps
        if not isinstance(negate_velocity, bool):
            raise TypeError(f"negate_velocity must be a bool, got {negate_velocity!r}")
        self.negate_velocity = negate_velocity

    train_eps = ScheduledParameter(non_negative=True, below=0.5)
    r"""Time margin $\epsilon$: training times lie in $[\epsilon, 1 - \epsilon]$."""

    def __repr__(self) -> str:
        return (
            f"FlowMatchingLoss(interpolant={self.interpolant!r}, coupling={self.coupling!r}, "
            f"t_sampler={self.time_sampler!r}, negate_velocity={self.negate_velocity})"
        )

    def _velocity(self, x: torch.Tensor, t: torch.Tensor, conditioning: dict) -> torch.Tensor:
        with self.autocast_context():
            out = self.model(x, t, **conditioning)
        return split_model_output(out, like=x)[0]

    def training_losses(
        self,
        x1: torch.Tensor,
        model_kwargs: dict | None = None,
        x0: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """Per-sample terms: ``loss`` `(B,)`, ``pred``, ``target``, ``t`` `(B,)`, ``weights``
        and ``elementwise`` (the per-element loss whose per-sample mean is ``loss``; ``None``
        with a ``loss_weight_fn``).

        Args:
            x1: Data `(B, *event)` on the loss's device and dtype.
            model_kwargs: Conditioning for the model (after label dropout).
            x0: Source samples shaped like ``x1``; standard normal when ``None``.
            generator: RNG of the source, the coupling and the times.
        """
        conditioning = model_kwargs or {}
        x0 = source_batch(x1, x0, generator)
        pair = self.coupling(x0, x1, generator=generator, **conditioning)
        conditioning = paired_conditioning(conditioning, pair.index, x1.shape[0])
        t = self.time_sampler(
            x1.shape[0], self.train_eps, device=x1.device, dtype=x1.dtype, generator=generator
        )
        with checked_inputs():  # t in [0, 1]: drawn here, or checked by the time sampler
            xt, ut = self.interpolant.interpolate(pair.x0, pair.x1, t)
        target = -ut if self.negate_velocity else ut
        pred = self._velocity(xt, t, conditioning)
        elementwise = (pred - target).square()
        loss = mean_flat(elementwise)
        weight_fn = self.loss_weight_fn
        if weight_fn is not None:
            loss = loss * apply_loss_weight(weight_fn, t)
        return {
            "loss": loss,
            "pred": pred,
            "target": target,
            "t": t,
            "weights": pair.weights,
            "elementwise": elementwise if weight_fn is None else None,
        }

    def probe_model(self, x: torch.Tensor, model_kwargs: dict) -> torch.Tensor:
        """The velocity at $t = 1/2$ on ``x`` under ``model_kwargs`` (the conditioning check).

        Args:
            x: Probe inputs `(B, *event)`.
            model_kwargs: Conditioning of the velocity model.
        """
        return self._velocity(
            x, torch.full((x.shape[0],), 0.5, device=x.device, dtype=x.dtype), model_kwargs
        )
