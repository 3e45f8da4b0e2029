r"""Two-sample distances used by the demos to report sample quality (energy distance, MMD)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from torchebm.core.errors import ShapeError, check_tensor

__all__ = ["energy_distance", "mmd_rbf"]


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_tensor("x", x, min_ndim=2, floating=True)
    check_tensor("y", y, min_ndim=2, floating=True)
    x = x.detach().reshape(x.shape[0], -1).to("cpu", torch.float64)
    y = y.detach().reshape(y.shape[0], -1).to("cpu", torch.float64)
    if x.shape[1] != y.shape[1]:
        raise ShapeError(
            f"x and y must have the same number of features, got {x.shape[1]} and {y.shape[1]}"
        )
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ShapeError(f"x and y need at least 2 samples each, got {x.shape[0]} and {y.shape[0]}")
    return x, y


def _offdiag_mean(k: torch.Tensor) -> torch.Tensor:
    n = k.shape[0]
    return (k.sum() - k.diagonal().sum()) / (n * (n - 1))


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    r"""Unbiased estimate of the energy distance between the laws of ``x`` and ``y``.

    .. math::
        D^2(P, Q) = 2\,\mathbb{E}\|X - Y\| - \mathbb{E}\|X - X'\| - \mathbb{E}\|Y - Y'\|

    with U-statistics for the within-sample terms, so the estimate is unbiased (it can be
    slightly negative when ``P = Q``). ``D^2 = 0`` iff ``P = Q``; it is in the units of
    the data (a distance).

    Args:
        x: Samples ``(N, *event_shape)``.
        y: Samples ``(M, *event_shape)``.

    Returns:
        The estimate as a Python float (computed in float64 on CPU).

    References:
        Székely and Rizzo, "Energy statistics: A class of statistics based on distances",
        Journal of Statistical Planning and Inference, 2013.
    """
    x, y = _pair(x, y)
    xy = torch.cdist(x, y).mean()
    xx = _offdiag_mean(torch.cdist(x, x))
    yy = _offdiag_mean(torch.cdist(y, y))
    return float(2 * xy - xx - yy)


def mmd_rbf(
    x: torch.Tensor,
    y: torch.Tensor,
    bandwidths: Sequence[float] | None = None,
) -> float:
    r"""Unbiased squared maximum mean discrepancy with a sum of Gaussian kernels.

    :math:`k(a, b) = \frac{1}{K}\sum_k \exp(-\|a - b\|^2 / (2 h_k^2))`. By default the
    bandwidths are :math:`h_k \in \{0.05, 0.1, 0.2, 0.5, 1\} \cdot s` with :math:`s` the
    root-mean-square standard deviation of ``y`` per feature: the small ones see local
    structure (thin manifolds, narrow modes) that a single median-heuristic kernel, like
    the energy distance, barely notices.

    Args:
        x: Samples ``(N, *event_shape)``.
        y: Reference samples ``(M, *event_shape)`` (they set the default bandwidths).
        bandwidths: Absolute bandwidths ``h_k > 0`` (default: relative to ``y``'s scale).

    Returns:
        :math:`\widehat{\mathrm{MMD}}^2_u` as a Python float (0 in expectation when the
        laws are equal; it can be slightly negative).

    References:
        Gretton et al., "A Kernel Two-Sample Test", JMLR 2012.
    """
    x, y = _pair(x, y)
    if bandwidths is None:
        scale = float(y.var(dim=0).mean().sqrt())
        scale = scale if scale > 0 else 1.0
        hs = [f * scale for f in (0.05, 0.1, 0.2, 0.5, 1.0)]
    else:
        hs = [float(h) for h in bandwidths]
        if not hs or any(not h > 0 for h in hs):
            raise ValueError(f"bandwidths must be positive numbers, got {bandwidths!r}")

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(a, b).pow(2)
        return torch.stack([torch.exp(-d2 / (2 * h * h)) for h in hs]).mean(0)

    return float(_offdiag_mean(k(x, x)) + _offdiag_mean(k(y, y)) - 2 * k(x, y).mean())
