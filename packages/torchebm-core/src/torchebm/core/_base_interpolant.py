r"""``BaseInterpolant``: probability paths $x_t = \alpha(t)\,x_1 + \sigma(t)\,x_0$.

Library-wide convention: **t = 0 is noise** ($x_0$), **t = 1 is data** ($x_1$).
Interpolants are stateless plain objects; results are on the inputs' device, in the dtype
PyTorch promotes ``x`` and ``t`` to (a ``t`` of lower precision is widened to ``x``'s)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from torchebm.core.errors import ShapeError, _check_flow_time, check_in, check_non_negative

__all__ = ["BaseInterpolant", "expand_t_like_x"]

_DIFFUSION_FORMS = ("constant", "SBDM", "sigma", "linear", "decreasing", "increasing-decreasing")


def expand_t_like_x(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape ``t`` of shape ``(B,)`` to ``(B, 1, ..., 1)`` with ``x.ndim`` dims.

    Example:
        >>> expand_t_like_x(torch.zeros(4), torch.zeros(4, 3, 8, 8)).shape
        torch.Size([4, 1, 1, 1])
    """
    return t.reshape(t.shape[0], *([1] * (x.ndim - 1)))


def _broadcast_t(t: Any, x: torch.Tensor) -> torch.Tensor:
    """``t`` broadcastable against ``x``: scalars stay scalars, ``(B,)`` -> ``(B, 1, ..., 1)``."""
    if isinstance(t, bool) or str(getattr(t, "dtype", "")) in ("torch.bool", "bool"):  # (numpy)
        raise TypeError(f"t must be a floating time in [0, 1], got a bool {type(t).__name__}")
    _check_flow_time(t)
    if not isinstance(t, torch.Tensor):  # a list of B times is (B,) too (it broadcast per feature)
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if torch.promote_types(t.dtype, x.dtype) == x.dtype:  # an int t, or float32 t for float64 x
        t = t.to(x.dtype)
    if t.ndim >= 1 and x.ndim >= 1:  # (B,) or (B, 1, ...): one time per sample
        if t.shape[0] != x.shape[0] or t.numel() != x.shape[0]:
            got = f"B={x.shape[0]} (or be 0-d), got {tuple(t.shape)}"
            raise ShapeError(f"t must have shape (B,) with {got}")
        return expand_t_like_x(t, x)
    return t


def _check_like_x(name: str, v: Any, x: torch.Tensor) -> None:
    if getattr(v, "shape", None) != x.shape:  # a (B, 1, 1, 1) `v`, or a number: it broadcasts
        got = tuple(v.shape) if isinstance(v, torch.Tensor) else f"a {type(v).__name__}"
        raise ShapeError(f"{name} must have the shape of x {tuple(x.shape)}, got {got}")


class BaseInterpolant(ABC):
    r"""Abstract interpolant $x_t = \alpha(t) x_1 + \sigma(t) x_0$ (x0 noise, x1 data).

    Subclasses implement `compute_alpha_t` and `compute_sigma_t` (the schedule and its time
    derivative, ``t`` already broadcast against the data) and may override
    `compute_d_alpha_alpha_ratio_t` with a closed form; interpolation, the probability-flow
    drift, diffusion forms and the velocity/score/noise conversions follow; these check that
    ``t`` lies in [0, 1] and is not NaN (one host read; the hooks above take ``t`` as given). With
    $\rho = \dot\alpha/\alpha$:

    $$
    v(x, t) = \rho\,x + \big(\rho\,\sigma^2 - \sigma\dot\sigma\big)\,\nabla\log p_t(x),
    \qquad \nabla\log p_t(x) = -\,\mathbb E[x_0 \mid x_t = x] / \sigma.
    $$

    Example:
        >>> class Linear(BaseInterpolant):
        ...     def compute_alpha_t(self, t):
        ...         return t, torch.ones_like(t)
        ...     def compute_sigma_t(self, t):
        ...         return 1 - t, -torch.ones_like(t)
        >>> xt, ut = Linear().interpolate(torch.zeros(2, 3), torch.ones(2, 3), torch.rand(2))

    References:
        Albergo, Boffi & Vanden-Eijnden, "Stochastic Interpolants: A Unifying Framework for
        Flows and Diffusions", 2023.
        Ma et al., "SiT: Exploring Flow and Diffusion-based Generative Models with Scalable
        Interpolant Transformers", ECCV 2024."""

    @abstractmethod
    def compute_alpha_t(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Return $(\alpha(t), \dot\alpha(t))$ (shapes of ``t``)."""

    @abstractmethod
    def compute_sigma_t(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Return $(\sigma(t), \dot\sigma(t))$ (shapes of ``t``)."""

    def compute_d_alpha_alpha_ratio_t(self, t: torch.Tensor) -> torch.Tensor:
        r"""$\dot\alpha/\alpha$ (default: $\dot\alpha / \max(\alpha, 10^{-8})$)."""
        alpha, d_alpha = self.compute_alpha_t(t)
        return d_alpha / alpha.clamp(min=_floor_for(alpha, 1e-8))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ------------------------------------------------------------------ paths
    def interpolate(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(x_t, u_t)``: $x_t = \alpha x_1 + \sigma x_0$, $u_t = \dot\alpha x_1 + \dot\sigma x_0$.

        Args:
            x0: Noise, shape ``(B, *event_shape)``.
            x1: Data, same shape.
            t: Times, shape ``(B,)`` (or a scalar)."""
        if x0.shape != x1.shape:
            got = f"x0 {tuple(x0.shape)} and x1 {tuple(x1.shape)}"
            raise ShapeError(f"x0 and x1 must have the same shape, got {got}")
        alpha, d_alpha, sigma, d_sigma = self._schedules(t, x1)
        xt = alpha * x1 + sigma * x0
        ut = d_alpha * x1 + d_sigma * x0
        return xt, ut

    def _schedules(self, t: Any, x: torch.Tensor, velocity: Any = None) -> tuple[torch.Tensor, ...]:
        """``(alpha, d_alpha, sigma, d_sigma)`` at ``t`` broadcast against ``x`` (and ``velocity``)."""
        if velocity is not None:  # a prediction converted by the caller: shaped like x
            _check_like_x("velocity", velocity, x)
        tb = _broadcast_t(t, x)
        return (*self.compute_alpha_t(tb), *self.compute_sigma_t(tb))

    def compute_drift(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Probability-flow drift ``(A, Bv)``, velocity $= -A + B_v\,s$, for ``x`` ``(B, ...)``.

        $A = -(\dot\alpha/\alpha)\,x$ (shaped like ``x``) and
        $B_v = (\dot\alpha/\alpha)\sigma^2 - \sigma\dot\sigma$ ``(B, 1, ..., 1)``."""
        tb = _broadcast_t(t, x)
        ratio = self.compute_d_alpha_alpha_ratio_t(tb)
        sigma, d_sigma = self.compute_sigma_t(tb)
        return -ratio * x, ratio * sigma.square() - sigma * d_sigma

    def compute_diffusion(
        self, x: torch.Tensor, t: torch.Tensor, form: str = "SBDM", norm: float = 1.0
    ) -> torch.Tensor:
        r"""Diffusion coefficient $D(t)$ of the SDE sampler, shape ``(B, 1, ..., 1)``.

        Forms: ``"constant"`` (``norm``), ``"SBDM"`` ($\text{norm}\cdot B_v$: the diffusion of
        the score-based diffusion model whose marginals are the path's, SiT's form),
        ``"sigma"`` ($\text{norm}\,\sigma$), ``"linear"`` ($\text{norm}(1-t)$),
        ``"decreasing"`` ($\text{norm}(1-t)^2$), ``"increasing-decreasing"``
        ($\text{norm}\cdot 4t(1-t)$); another ``form`` raises ``ValueError`` naming ``form``."""
        check_in("form", form, _DIFFUSION_FORMS)
        norm = check_non_negative("norm", norm)
        tb = _broadcast_t(t, x)
        if form == "constant":
            d = torch.full_like(tb, float(norm))
        elif form == "SBDM":  # B_v does not depend on x: one row of x keeps A's part small
            d = norm * self.compute_drift(x[:1] if tb.ndim == 0 else x, t)[1]
        elif form == "sigma":
            d = norm * self.compute_sigma_t(tb)[0]
        elif form == "linear":
            d = norm * (1 - tb)
        elif form == "decreasing":
            d = norm * (1 - tb).square()
        else:  # "increasing-decreasing"
            d = norm * 4 * tb * (1 - tb)
        # a batch-uniform time: computed once, viewed as (B, 1, ..., 1)
        return d.reshape(()).expand(x.shape[0], *([1] * (x.ndim - 1))) if tb.ndim == 0 else d

    # ------------------------------------------------------------------ conversions
    def velocity_to_score(
        self, velocity: torch.Tensor, x: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        r"""Score from a velocity: $s = (\alpha v - \dot\alpha x) / \max((\dot\alpha\sigma -
        \alpha\dot\sigma)\sigma, 10^{-12})$ (no $1/\dot\alpha$; undetermined at $\sigma = 0$)."""
        alpha, d_alpha, sigma, d_sigma = self._schedules(t, x, velocity)
        den = (d_alpha * sigma - alpha * d_sigma) * sigma
        return (alpha * velocity - d_alpha * x) / den.clamp(min=_floor_for(den, 1e-12))

    def velocity_to_noise(
        self, velocity: torch.Tensor, x: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        r"""Noise $\hat x_0$ from a velocity prediction: $(x - r v)/(\sigma - r\dot\sigma)$."""
        alpha, d_alpha, sigma, d_sigma = self._schedules(t, x, velocity)
        r = alpha / _nonzero(d_alpha, 1e-8)
        return (x - r * velocity) / _nonzero(sigma - r * d_sigma, 1e-12)

    def score_to_velocity(
        self, score: torch.Tensor, x: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        r"""Velocity $B_v s - A$ from a score (undetermined at $\alpha = 0$: floored, $10^{-8}$)."""
        _check_like_x("score", score, x)
        a, bv = self.compute_drift(x, t)
        return bv * score - a

    def score_to_noise(self, score: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r"""Noise $\hat x_0 = -\sigma s$."""
        _check_like_x("score", score, x)
        sigma, _ = self.compute_sigma_t(_broadcast_t(t, x))
        return -sigma * score

    def noise_to_score(self, noise: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r"""Score $s = -\hat x_0 / \sigma$ ($\sigma$ floored at $10^{-8}$)."""
        _check_like_x("noise", noise, x)
        sigma, _ = self.compute_sigma_t(_broadcast_t(t, x))
        return -noise / sigma.clamp(min=_floor_for(sigma, 1e-8))

    def noise_to_velocity(
        self, noise: torch.Tensor, x: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        r"""Velocity from a noise prediction (via the score; undetermined at $\alpha = 0$)."""
        return self.score_to_velocity(self.noise_to_score(noise, x, t), x, t)

    def velocity_to_data(
        self, velocity: torch.Tensor, x: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        r"""Data estimate $\hat x_1 = (\dot\sigma x - \sigma v)/(\alpha\dot\sigma - \sigma\dot\alpha)$
        from a velocity (exact at $\alpha = 0$ too, where $(x - \sigma\hat x_0)/\alpha$ is 0/0)."""
        alpha, d_alpha, sigma, d_sigma = self._schedules(t, x, velocity)
        return (d_sigma * x - sigma * velocity) / _nonzero(alpha * d_sigma - sigma * d_alpha, 1e-12)


def _floor_for(z: torch.Tensor, floor: float) -> float:
    """``floor``, raised to the smallest normal number of ``z``'s dtype (6.1e-5 in float16)."""
    return max(floor, torch.finfo(z.dtype).tiny)


def _nonzero(z: torch.Tensor, floor: float) -> torch.Tensor:
    """Push entries with ``|z| < floor`` to ``±floor`` (sign kept, 0 -> +floor; see `_floor_for`)."""
    floor = _floor_for(z, floor)
    return torch.where(z.abs() < floor, z.new_tensor(floor).copysign(z), z)  # dtype of z
