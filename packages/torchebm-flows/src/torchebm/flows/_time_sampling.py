r"""Training-time distributions shared by the interpolant losses (flow, equilibrium and
energy matching): ``t_sampler="uniform"``, ``"lognormal"`` or a callable, and the optional
per-sample ``loss_weight_fn``."""

from __future__ import annotations

from typing import Any, Callable, Union

import torch

from torchebm.core._module import warn_user
from torchebm.core.errors import (
    ConfigurationError,
    ShapeError,
    _check_flow_time,
    check_finite,
    check_int,
    check_positive,
)

__all__ = [
    "TimeSampler",
    "LossTimeSampler",
    "TSampler",
    "check_loss_weight_fn",
    "apply_loss_weight",
]

TSampler = Union[str, Callable[..., torch.Tensor]]
_KINDS = ("uniform", "lognormal")


class TimeSampler:
    r"""Draws training times $t \in [\epsilon, 1 - \epsilon]$ for a batch.

    * ``"uniform"``: $t \sim U[\epsilon, 1-\epsilon]$.
    * ``"lognormal"`` (the EDM/SiT skew): $z \sim \mathcal N(0, 1)$,
      $\sigma = e^{\mu + s z}$, $t = 1/(1 + \sigma)$, so
      $\operatorname{logit} t = -(\mu + s z) \sim \mathcal N(-\mu, s^2)$; clamped to
      $[\max(10^{-4}, \epsilon), 1 - \epsilon]$.
    * a callable ``(batch, *, device, dtype, generator) -> t`` of shape `(batch,)`, with
      values in [0, 1] (checked: one host read per call); clamped to
      $[\epsilon, 1 - \epsilon]$.

    Args:
        kind: ``"uniform"``, ``"lognormal"`` or a callable.
        t_p_mean: $\mu$ of the log-normal. Default -1.2.
        t_p_std: $s > 0$ of the log-normal. Default 1.2.

    Example:
        >>> ts = TimeSampler("lognormal", t_p_mean=-1.2, t_p_std=1.2)
        >>> t = ts(256, 0.0, device="cpu", dtype=torch.float32, generator=None)

    References:
        Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models",
        2022. Esser et al., "Scaling Rectified Flow Transformers", 2024.
    """

    #: The name the caller gave the distribution under, for errors (the losses: ``t_sampler``).
    _arg = "kind"

    def __init__(self, kind: TSampler = "uniform", t_p_mean: float = -1.2, t_p_std: float = 1.2):
        if not callable(kind) and kind not in _KINDS:
            raise ConfigurationError(
                f"{self._arg} must be 'uniform', 'lognormal' or a callable "
                f"(batch, *, device, dtype, generator) -> t, got {kind!r}"
            )
        self.kind = kind
        self.t_p_mean = check_finite("t_p_mean", t_p_mean)
        self.t_p_std = check_positive("t_p_std", t_p_std)

    def __call__(
        self,
        batch: int,
        eps: float,
        *,
        device: Any,
        dtype: torch.dtype,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Times of shape `(batch,)`; ``eps`` in ``[0, 0.5)``."""
        batch = check_int("batch", batch, minimum=1)
        if not 0.0 <= check_finite("eps", eps) < 0.5:
            raise ConfigurationError(f"eps must be in [0, 0.5), got {eps!r}")
        if callable(self.kind):
            t = self.kind(batch, device=device, dtype=dtype, generator=generator)
            if not isinstance(t, torch.Tensor) or t.shape != (batch,):
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ShapeError(f"{self._arg} must return a tensor of shape ({batch},), got {got}")
            _check_flow_time(t, f"the times {self._arg}(batch, ...) returned")
            t = t.to(device=device, dtype=dtype)
            return t.clamp(min=eps, max=1.0 - eps) if eps else t
        if self.kind == "lognormal":
            z = torch.randn(batch, generator=generator, device=device, dtype=dtype)
            t = torch.sigmoid(-(z * self.t_p_std + self.t_p_mean))  # = 1 / (1 + sigma)
            return t.clamp(min=max(1.0e-4, eps), max=1.0 - eps)
        t = torch.rand(batch, generator=generator, device=device, dtype=dtype)
        return t.mul_(1.0 - 2.0 * eps).add_(eps) if eps else t

    def __repr__(self) -> str:
        if self.kind == "lognormal":
            return f"lognormal(t_p_mean={self.t_p_mean}, t_p_std={self.t_p_std})"
        return repr(self.kind)


class LossTimeSampler(TimeSampler):
    """The `TimeSampler` of a loss's ``t_sampler=``/``t_p_mean``/``t_p_std``: its errors name
    ``t_sampler``, the argument the user passed, and it warns when ``t_p_mean``/``t_p_std``
    are set for another sampler than ``"lognormal"`` (they have no effect there)."""

    _arg = "t_sampler"

    def __init__(self, kind: TSampler = "uniform", t_p_mean: float = -1.2, t_p_std: float = 1.2):
        super().__init__(kind, t_p_mean, t_p_std)
        if kind != "lognormal" and (t_p_mean, t_p_std) != (-1.2, 1.2):
            warn_user(
                f"t_p_mean={t_p_mean} and t_p_std={t_p_std} shape only t_sampler='lognormal'; "
                f"they have no effect with t_sampler={kind!r}"
            )


def check_loss_weight_fn(fn: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``fn`` if it is ``None`` or callable, else a `TypeError` naming it."""
    if fn is not None and not callable(fn):
        raise TypeError(f"loss_weight_fn must be a callable t -> weight or None, got {fn!r}")
    return fn


def apply_loss_weight(fn: Callable[[torch.Tensor], torch.Tensor], t: torch.Tensor) -> torch.Tensor:
    """``fn(t)``, checked to be a tensor of shape ``()`` or ``(B,)`` (one weight per sample)."""
    w = fn(t)
    if not isinstance(w, torch.Tensor) or w.shape not in ((), t.shape):
        got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise ShapeError(
            f"loss_weight_fn(t) must return a tensor of shape () or {tuple(t.shape)}, got {got}"
        )
    return w
