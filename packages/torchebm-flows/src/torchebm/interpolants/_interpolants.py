r"""Built-in interpolants (t = 0 noise, t = 1 data)."""

from __future__ import annotations

import math

import torch

from torchebm.core import BaseInterpolant
from torchebm.core._base_interpolant import _broadcast_t, _check_like_x, _floor_for
from torchebm.core.errors import ConfigurationError, check_positive

__all__ = [
    "LinearInterpolant",
    "CosineInterpolant",
    "VariancePreservingInterpolant",
    "VarianceExplodingInterpolant",
]


class LinearInterpolant(BaseInterpolant):
    r"""Rectified-flow / conditional-OT path $x_t = t\,x_1 + (1-t)\,x_0$.

    $\alpha = t,\ \dot\alpha = 1,\ \sigma = 1-t,\ \dot\sigma = -1$; the conditional
    velocity is $u_t = x_1 - x_0$.

    Example:
        >>> xt, ut = LinearInterpolant().interpolate(torch.zeros(2, 2), torch.ones(2, 2),
        ...                                          torch.tensor([0.25, 1.0]))
        >>> xt[:, 0].tolist(), ut[0].tolist()
        ([0.25, 1.0], [1.0, 1.0])

    References:
        Liu, Gong & Liu, "Flow Straight and Fast: Learning to Generate and Transfer Data
        with Rectified Flow", ICLR 2023.
        Lipman et al., "Flow Matching for Generative Modeling", ICLR 2023.
    """

    def compute_alpha_t(self, t):
        return t, torch.ones_like(t)

    def compute_sigma_t(self, t):
        return 1 - t, -torch.ones_like(t)

    def compute_d_alpha_alpha_ratio_t(self, t):
        return 1 / t.clamp(min=_floor_for(t, 1e-8))

    def interpolate(self, x0, x1, t):
        r"""As [`BaseInterpolant.interpolate`][torchebm.core.BaseInterpolant.interpolate], with $u_t = x_1 - x_0$ directly.

        Bit-for-bit the generic result ($1 \cdot x_1 + (-1) \cdot x_0 = x_1 - x_0$)
        without the two unit-derivative tensors and their products.

        Args:
            x0: Source samples `(B, *event)`.
            x1: Data samples `(B, *event)`.
            t: Times `(B,)`.

        Returns:
            `(x_t, u_t)`, each `(B, *event)`.
        """
        if not isinstance(t, torch.Tensor) or x0.shape != x1.shape:  # the base names x0, x1
            return super().interpolate(x0, x1, t)
        tb = _broadcast_t(t, x1)
        if not (tb.dtype == x1.dtype == x0.dtype):
            return super().interpolate(x0, x1, t)
        return tb * x1 + (1 - tb) * x0, x1 - x0


class CosineInterpolant(BaseInterpolant):
    r"""Trigonometric (GVP) path $\alpha = \sin(\pi t/2)$, $\sigma = \cos(\pi t/2)$.

    Variance preserving: $\alpha^2 + \sigma^2 = 1$.

    Example:
        >>> a, _ = CosineInterpolant().compute_alpha_t(torch.tensor([1.0]))
        >>> round(a.item(), 6)
        1.0

    References:
        Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021.
        Albergo & Vanden-Eijnden, "Building Normalizing Flows with Stochastic
        Interpolants", ICLR 2023.
    """

    def compute_alpha_t(self, t):
        return torch.sin(0.5 * math.pi * t), 0.5 * math.pi * _cos_half_pi(t)

    def compute_sigma_t(self, t):
        return _cos_half_pi(t), -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


def _cos_half_pi(t: torch.Tensor) -> torch.Tensor:
    r"""$\cos(\pi t/2)$ as $\sin(\pi(1-t)/2)$: exact 0 at $t = 1$ ($1 - t$ is exact near 1).

    ``cos`` of the rounded $\pi t/2$ was $-4.4\cdot10^{-8}$ at $t = 1$ in float32 (a negative
    $\sigma$) and 5% off at $t = 1 - 10^{-6}$.
    """
    return torch.sin(0.5 * math.pi * (1 - t))


class VariancePreservingInterpolant(BaseInterpolant):
    r"""DDPM-like variance-preserving path with a linear $\beta$ schedule.

    With $L(t) = -\tfrac14(1-t)^2(\sigma_{max}-\sigma_{min}) - \tfrac12(1-t)\sigma_{min}$:
    $\alpha = e^{L}$, $\sigma = \sqrt{1 - e^{2L}}$,
    $\dot\alpha = \alpha L'$, $\dot\sigma = -e^{2L}L'/\sigma$, where
    $L'(t) = \tfrac12\beta_t$ and $\beta_t = \sigma_{min} + (1-t)(\sigma_{max}-\sigma_{min})$
    runs from $\sigma_{max}$ (noise) to $\sigma_{min}$ (data). $\alpha(1) = 1$;
    $\alpha(0) = e^{-(\sigma_{max}+\sigma_{min})/4}$ (about 0.0066 with the defaults).

    At the data end the variance $1 - e^{2L}$ is floored at $10^{-12}$ (at the smallest
    normal number, $6.1\cdot10^{-5}$, in float16): at exactly $t = 1$, $\sigma = 10^{-6}$
    instead of 0 and $\dot\sigma = -\sigma_{min}/(2\cdot10^{-6}) = -5\cdot10^{4}$ with the
    defaults (float16: $\sigma = 2^{-7}$, $\dot\sigma \approx -6.4$), where the true
    $\dot\sigma$ is $-\infty$ ($\sigma \approx \sqrt{\sigma_{min}(1-t)}$ near 1). In
    bfloat16, a $t$ within $2^{-9}$ of 1 rounds to 1 and gets the floored values.

    Args:
        sigma_min: $\beta$ at the data end (t = 1).
        sigma_max: $\beta$ at the noise end (t = 0).

    Example:
        >>> vp = VariancePreservingInterpolant()
        >>> a, _ = vp.compute_alpha_t(torch.tensor([0.0]))
        >>> round(a.item(), 4)
        0.0066

    References:
        Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
        Song et al., "Score-Based Generative Modeling through Stochastic Differential
        Equations", ICLR 2021.
    """

    def __init__(self, sigma_min: float = 0.1, sigma_max: float = 20.0):
        self.sigma_min = check_positive("sigma_min", sigma_min)
        self.sigma_max = check_positive("sigma_max", sigma_max)
        if self.sigma_max < self.sigma_min:
            raise ConfigurationError(
                f"sigma_max must be >= sigma_min, got sigma_min={sigma_min}, sigma_max={sigma_max}"
            )

    def __repr__(self) -> str:
        return (
            f"VariancePreservingInterpolant(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"
        )

    def _log_mean_coeff(self, t):
        s = 1 - t
        return -0.25 * s.square() * (self.sigma_max - self.sigma_min) - 0.5 * s * self.sigma_min

    def _d_log_mean_coeff(self, t):
        return 0.5 * (1 - t) * (self.sigma_max - self.sigma_min) + 0.5 * self.sigma_min

    def compute_alpha_t(self, t):
        alpha = torch.exp(self._log_mean_coeff(t))
        return alpha, alpha * self._d_log_mean_coeff(t)

    def compute_sigma_t(self, t):
        two_l = 2 * self._log_mean_coeff(t)
        var = -torch.expm1(two_l)  # 1 - e^{2L}: the difference cancelled near t = 1 (8% off
        sigma = torch.sqrt(var.clamp(min=_floor_for(var, 1e-12)))  # at 1 - 1e-6 in float32)
        return sigma, -torch.exp(two_l) * self._d_log_mean_coeff(t) / sigma

    def compute_d_alpha_alpha_ratio_t(self, t):
        return self._d_log_mean_coeff(t)

    def compute_drift(self, x, t):
        tb = _broadcast_t(t, x)
        beta = self.sigma_min + (1 - tb) * (self.sigma_max - self.sigma_min)
        return -0.5 * beta * x, 0.5 * beta


class VarianceExplodingInterpolant(BaseInterpolant):
    r"""Variance-exploding path $x_t = x_1 + \sigma(t)\,x_0$ ($\alpha \equiv 1$).

    $\sigma$ decreases from $\sigma_{max}$ at t = 0 (noise) to $\sigma_{min}$
    at t = 1 (data). Two schedules:

    * ``"geometric"`` (NCSN / VE-SDE): $\sigma(t) = \sigma_{max}^{1-t}\sigma_{min}^{t}$;
    * ``"edm"`` (Karras et al.): $\sigma(t) = \big(\sigma_{max}^{1/\rho} +
      t(\sigma_{min}^{1/\rho} - \sigma_{max}^{1/\rho})\big)^{\rho}$.

    Since $\dot\alpha = 0$ the velocity/score relations are the closed forms
    $v = -\sigma\dot\sigma\,s$ and $\hat x_0 = v/\dot\sigma$ (overridden here).
    The prior at t = 0 is approximately $\mathcal N(0, \sigma_{max}^2 I)$: start samplers
    from ``sigma_max * randn`` (`FlowSampler` does so when no ``x`` is given).

    Args:
        sigma_min: Noise level at t = 1.
        sigma_max: Noise level at t = 0.
        schedule: ``"geometric"`` or ``"edm"``.
        rho: EDM schedule exponent.

    Example:
        >>> ve = VarianceExplodingInterpolant(schedule="edm")
        >>> s, _ = ve.compute_sigma_t(torch.tensor([0.0, 1.0]))
        >>> [round(v, 3) for v in s.tolist()]
        [80.0, 0.002]

    References:
        Song et al., "Score-Based Generative Modeling through Stochastic Differential
        Equations", ICLR 2021.
        Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models",
        NeurIPS 2022.
    """

    def __init__(
        self,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        schedule: str = "geometric",
        rho: float = 7.0,
    ):
        self.sigma_min = check_positive("sigma_min", sigma_min)
        self.sigma_max = check_positive("sigma_max", sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise ConfigurationError(
                f"sigma_max must be > sigma_min, got sigma_min={sigma_min}, sigma_max={sigma_max}"
            )
        if schedule not in ("geometric", "edm"):
            raise ConfigurationError(
                f"schedule must be one of ['geometric', 'edm'], got {schedule!r}"
            )
        self.schedule = schedule
        self.rho = check_positive("rho", rho)

    def __repr__(self) -> str:
        return (
            f"VarianceExplodingInterpolant(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, "
            f"schedule={self.schedule!r}, rho={self.rho})"
        )

    def compute_alpha_t(self, t):
        return torch.ones_like(t), torch.zeros_like(t)

    def compute_sigma_t(self, t):
        if self.schedule == "geometric":
            log_ratio = math.log(self.sigma_min / self.sigma_max)
            sigma = self.sigma_max * torch.exp(t * log_ratio)
            return sigma, sigma * log_ratio
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        base = hi + t * (lo - hi)
        return base.pow(self.rho), self.rho * base.pow(self.rho - 1) * (lo - hi)

    def compute_d_alpha_alpha_ratio_t(self, t):
        return torch.zeros_like(t)

    def velocity_to_score(self, velocity, x, t):
        _check_like_x("velocity", velocity, x)
        sigma, d_sigma = self.compute_sigma_t(_broadcast_t(t, x))
        return -velocity / (sigma * d_sigma)

    def velocity_to_noise(self, velocity, x, t):
        _check_like_x("velocity", velocity, x)
        _, d_sigma = self.compute_sigma_t(_broadcast_t(t, x))
        return velocity / d_sigma
