r"""Functional synthetic 2-D generators: ``make_<name>(n_samples, ..., generator, device, dtype)``.

Every function draws from ``generator`` (on the generator's device) when one is given and
never touches the global RNG then; with ``generator=None`` it draws from the global RNG,
like ``torch.randn``. Maths is done in float64 and cast at the end, so the same generator
state gives the same points (up to rounding) in every dtype and on every device.

Every ``make_<name>`` returns points ``(n_samples, 2)`` (``make_grid``: ``(n**2, 2)``) and
takes the keyword-only options ``generator`` (source of randomness; the global RNG when
``None``), ``device`` (of the result; default CPU, or the generator's device) and ``dtype``
(floating; default ``torch.get_default_dtype()``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from torchebm.core._module import check_float_dtype
from torchebm.core.errors import (
    check_finite,
    check_generator,
    check_int,
    check_non_negative,
    check_positive,
)

__all__ = [
    "make_gaussian_mixture",
    "make_eight_gaussians",
    "make_two_moons",
    "make_swiss_roll",
    "make_circle",
    "make_checkerboard",
    "make_pinwheel",
    "make_grid",
    "make_two_spirals",
]

_F64 = torch.float64


def _check_dtype(dtype: Any) -> torch.dtype:
    if dtype is None:
        return torch.get_default_dtype()
    return check_float_dtype("dtype", dtype)


def _check_device(device: Any) -> torch.device | None:
    if device is None:
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be a torch.device or device string, got {device!r}") from exc


class _Rng:
    """Float64 draws from ``generator`` on its device (the global RNG on CPU when None)."""

    def __init__(self, generator: torch.Generator | None):
        self.g = generator
        self.device = generator.device if generator is not None else torch.device("cpu")

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.g, device=self.device, dtype=_F64)

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.g, device=self.device, dtype=_F64)

    def randperm(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.g, device=self.device)


def _start(
    n_samples: Any, noise: Any, generator: Any, names: tuple[str, str] = ("n_samples", "noise")
) -> tuple[int, float, _Rng]:
    """The checked count and noise scale of a generator (named ``names``), and its randomness."""
    n = check_int(names[0], n_samples, minimum=1)
    return n, check_non_negative(names[1], noise), _Rng(check_generator(generator))


def _finish(points: torch.Tensor, device: Any, dtype: Any) -> torch.Tensor:
    return points.to(device=_check_device(device), dtype=_check_dtype(dtype))


def _balanced_labels(n: int, k: int, device: torch.device) -> torch.Tensor:
    """``n`` labels in ``0..k-1``, as even as possible (the first ``n mod k`` get one more)."""
    counts = torch.full((k,), n // k, dtype=torch.long)
    counts[: n % k] += 1
    return torch.repeat_interleave(torch.arange(k), counts).to(device)


def _mixture(n: int, centres: torch.Tensor, std: float, rng: _Rng) -> torch.Tensor:
    labels = _balanced_labels(n, centres.shape[0], rng.device)
    points = centres.to(rng.device)[labels] + std * rng.randn(n, 2)
    return points[rng.randperm(n)]


def make_gaussian_mixture(
    n_samples: int = 2000,
    n_components: int = 8,
    std: float = 0.05,
    radius: float = 1.0,
    *,
    generator: torch.Generator | None = None,
    device: Any = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Isotropic Gaussians with centres evenly spaced on a circle.

    Centre ``k`` is $r(\cos 2\pi k/K, \sin 2\pi k/K)$; samples are split as evenly as
    possible (the first ``n mod K`` components get one more), ``centre + std * xi``, shuffled.

    Args:
        n_samples: Number of points (>= 1).
        n_components: Number of components ``K`` (>= 1).
        std: Standard deviation of each component (>= 0).
        radius: Radius ``r`` of the circle of centres (>= 0).
        generator: Source of randomness (default: the global RNG).
        device: Device of the result (default: the generator's device, else CPU).
        dtype: Floating dtype of the result (default: ``torch.get_default_dtype()``).

    Example:
        >>> make_gaussian_mixture(100, n_components=4, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([100, 2])
    """
    n, std, rng = _start(n_samples, std, generator, ("n_samples", "std"))
    k = check_int("n_components", n_components, minimum=1)
    radius = check_non_negative("radius", radius)
    angles = 2 * math.pi * torch.arange(k, dtype=_F64) / k
    centres = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return _finish(_mixture(n, centres, std, rng), device, dtype)


def make_eight_gaussians(
    n_samples: int = 2000,
    std: float = 0.02,
    scale: float = 2.0,
    *,
    generator: torch.Generator | None = None,
    device: Any = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Eight Gaussians at $s\cdot\{(\pm1, 0), (0, \pm1), (\pm\tfrac{1}{\sqrt2}, \pm\tfrac{1}{\sqrt2})\}$.

    Samples are split evenly over the centres, ``centre + std * xi``, shuffled.

    Args:
        n_samples: Number of points (>= 1).
        std: Standard deviation of each component (>= 0).
        scale: Distance ``s`` of the centres from the origin (>= 0).
        generator: Source of randomness (default: the global RNG).
        device: Device of the result (default: the generator's device, else CPU).
        dtype: Floating dtype of the result (default: ``torch.get_default_dtype()``).

    Example:
        >>> make_eight_gaussians(64, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([64, 2])

    References:
        Grathwohl et al., "FFJORD: Free-form Continuous Dynamics for Scalable Reversible
        Generative Models", ICLR 2019 (toy data).
    """
    n, std, rng = _start(n_samples, std, generator, ("n_samples", "std"))
    centres = eight_centres(check_non_negative("scale", scale))
    return _finish(_mixture(n, centres, std, rng), device, dtype)


def eight_centres(scale: float) -> torch.Tensor:
    """The eight centres of `make_eight_gaussians`, `(8, 2)` float64, in its order."""
    h = 1.0 / math.sqrt(2.0)
    return scale * torch.tensor(
        [(1, 0), (-1, 0), (0, 1), (0, -1), (h, h), (h, -h), (-h, h), (-h, -h)], dtype=_F64
    )


def make_two_moons(
    n_samples: int = 2000,
    noise: float = 0.05,
    *,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    device: Any = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Two interleaving half circles.

    The outer moon has ``n // 2`` points $(\cos\theta, \sin\theta)$, the inner moon the
    rest $(1 - \cos\theta, \tfrac12 - \sin\theta)$, $\theta$ evenly spaced on
    $[0, \pi]$; then ``+ noise * xi`` and (by default) a random permutation.

    Args:
        n_samples: Number of points (>= 1).
        noise: Standard deviation of the Gaussian noise (>= 0).
        shuffle: Shuffle the points (the reference kept the outer moon first).
        generator: Source of randomness (default: the global RNG).
        device: Device of the result (default: the generator's device, else CPU).
        dtype: Floating dtype of the result (default: ``torch.get_default_dtype()``).

    Example:
        >>> make_two_moons(100, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([100, 2])
    """
    n, noise, rng = _start(n_samples, noise, generator)
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
    n_out = n // 2
    n_in = n - n_out
    a_out = torch.linspace(0, math.pi, n_out, dtype=_F64)
    a_in = torch.linspace(0, math.pi, n_in, dtype=_F64)
    outer = torch.stack([torch.cos(a_out), torch.sin(a_out)], dim=1)
    inner = torch.stack([1 - torch.cos(a_in), 1 - torch.sin(a_in) - 0.5], dim=1)
    points = torch.cat([outer, inner]).to(rng.device) + noise * rng.randn(n, 2)
    if shuffle:
        points = points[rng.randperm(n)]
    return _finish(points, device, dtype)


def make_swiss_roll(
    n_samples: int = 2000,
    noise: float = 0.05,
    arclength: float = 3.0,
    *,
    generator: torch.Generator | None = None,
    device: Any = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""2-D Swiss roll (an Archimedean spiral), centred and scaled to unit-ish size.

    $u \sim U(0, 1)$, $t = a\pi(1 + 2u)$, point $(t\cos t, t\sin t) + \text{noise}\,\xi$;
    the set is then centred and divided by twice the mean per-axis standard deviation (so
    each axis has a standard deviation of about 1/2). ``noise`` is in the units of the raw
    spiral (radius between $a\pi$ and $3a\pi$).

    Args:
        n_samples: Number of points (>= 1).
        noise: Standard deviation of the Gaussian noise (>= 0).
        arclength: ``a``; the spiral makes ``a`` turns.
        generator: Source of randomness (default: the global RNG).
        device: Device of the result (default: the generator's device, else CPU).
        dtype: Floating dtype of the result (default: ``torch.get_default_dtype()``).

    Example:
        >>> make_swiss_roll(100, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([100, 2])
    """
    n, noise, rng = _start(n_samples, noise, generator)
    arclength = check_positive("arclength", arclength)
    t = arclength * math.pi * (1 + 2 * rng.rand(n))
    points = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) + noise * rng.randn(n, 2)
    points = points - points.mean(dim=0)
    if n > 1:
        points = points / (2 * points.std(dim=0).mean())
    return _finish(points, device, dtype)


def make_circle(
    n_samples: int = 2000,
    noise: float = 0.05,
    radius: float = 1.0,
    *,
    generator: torch.Generator | None = None,
    device: Any = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Points on a circle: $r(\cos\theta, \sin\theta) + \text{noise}\,\xi$, $\theta \sim U(0, 2\pi)$.

    Args:
        n_samples: Number of points (>= 1).
        noise: Standard deviation of the Gaussian noise (>= 0).
        radius: Radius ``r`` (>= 0).
        generator: Source of randomness (default: the global RNG).
        device: Device of the result (default: the generator's device, else CPU).
        dtype: Floating dtype of the result (default: ``torch.get_default_dtype()``).

    Example:
        >>> make_circle(100, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([100, 2])
    """
    n, noise, rng = _start(n_samples, noise, generator)
    radius = check_non_negative("radius", radius)
    theta = 2 * math.pi * rng.rand(n)
    points = radius * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    return _finish(points + noise * rng.randn(n, 2), device, dtype)


def make_checkerboard(
    n_samples: int = 2000,
    range_limit: float = 4.0,
    noise: float = 0.01,
    *,
    generator: torch.Generator | None = None,
    device: Any = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Uniform points on the "black" unit cells of a checkerboard on $[-L, L]^2$.

    Rejection sampling: uniform points in the square are kept when
    $\lfloor x\rfloor + \lfloor y\rfloor$ is odd (proposals in batches of
    ``max(1000, 2.5 n)``), then ``+ noise * xi``.

    Args:
        n_samples: Number of points (>= 1).
        range_limit: Half side ``L`` of the square (> 0, < 2**52).
        noise: Standard deviation of the Gaussian noise (>= 0).
        generator: Source of randomness (default: the global RNG).
        device: Device of the result (default: the generator's device, else CPU).
        dtype: Floating dtype of the result (default: ``torch.get_default_dtype()``).

    Example:
        >>> make_checkerboard(100, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([100, 2])
    """
    n, noise, rng = _start(n_samples, noise, generator)
    limit = check_positive("range_limit", range_limit)
    if limit >= 2.0**52:  # float64 holds only integers there: no point in a black cell at 2**53
        raise ValueError(f"range_limit must be below 2**52, got {range_limit}")
    batch = max(1000, int(2.5 * n))
    kept: list[torch.Tensor] = []
    total = 0
    while total < n:
        p = (2 * rng.rand(batch, 2) - 1) * limit
        black = torch.remainder(torch.floor(p[:, 0]) + torch.floor(p[:, 1]), 2) == 1
        p = p[black]
        kept.append(p)
        total += p.shape[0]
    points = torch.cat(kept)[:n]
    return _finish(points + noise * rng.randn(n, 2), device, dtype)


def make_pinwheel(
    n_samples: int = 2000,
    n_classes: int = 5,
    noise: float = 0.05,
    radial_scale: float = 2.0,
    angular_scale: float = 0.1,
    spiral_scale: float = 5.0,
    *,
    generator: torch.Generator | None = None,
    device: Any = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Pinwheel: ``K`` curved arms.

    For arm ``k``: $t = \sqrt{u}$, $u \sim U(0,1)$, radius $t\,r_s$, angle
    $2\pi k/K + s_s t + a_s \xi$; arms are split as evenly as possible, shuffled, then
    ``+ noise * xi`` when ``noise > 0``.

    Args:
        n_samples: Number of points (>= 1).
        n_classes: Number of arms ``K`` (>= 1).
        noise: Standard deviation of the isotropic Gaussian noise (>= 0).
        radial_scale: Arm length $r_s$ (> 0).
        angular_scale: Angular spread $a_s$ (>= 0).
        spiral_scale: Twist $s_s$ (radians over an arm).
        generator: Source of randomness (default: the global RNG).
        device: Device of the result (default: the generator's device, else CPU).
        dtype: Floating dtype of the result (default: ``torch.get_default_dtype()``).

    Example:
        >>> make_pinwheel(100, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([100, 2])

    References:
        Johnson et al., "Composing graphical models with neural networks for structured
        representations and fast inference", NeurIPS 2016 (pinwheel data).
    """
    n, noise, rng = _start(n_samples, noise, generator)
    k = check_int("n_classes", n_classes, minimum=1)
    radial_scale = check_positive("radial_scale", radial_scale)
    angular_scale = check_non_negative("angular_scale", angular_scale)
    spiral_scale = check_finite("spiral_scale", spiral_scale)  # was float(): "a", True passed
    labels = _balanced_labels(n, k, rng.device).to(_F64)
    t = torch.sqrt(rng.rand(n))
    angle = 2 * math.pi * labels / k + spiral_scale * t + angular_scale * rng.randn(n)
    points = (radial_scale * t)[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    points = points[rng.randperm(n)]
    if noise > 0:
        points = points + noise * rng.randn(n, 2)
    return _finish(points, device, dtype)


def make_grid(
    n_samples_per_dim: int = 10,
    range_limit: float = 1.0,
    noise: float = 0.01,
    *,
    generator: torch.Generator | None = None,
    device: Any = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Regular ``n x n`` grid on $[-L, L]^2$ (``ij`` order), plus ``noise * xi`` if ``noise > 0``.

    Args:
        n_samples_per_dim: Points per axis ``n`` (>= 1); the result has ``n**2`` points. The
            coordinates are ``linspace(-L, L, n)``: ``n = 1`` gives the corner ``(-L, -L)``, as
            in torchebm 0.8.9.
        range_limit: Half side ``L`` (>= 0).
        noise: Standard deviation of the Gaussian jitter (>= 0).
        generator: Source of randomness (default: the global RNG).
        device: Device of the result (default: the generator's device, else CPU).
        dtype: Floating dtype of the result (default: ``torch.get_default_dtype()``).

    Returns:
        Points ``(n**2, 2)``.

    Example:
        >>> make_grid(3, noise=0.0)[:2]
        tensor([[-1., -1.],
                [-1.,  0.]])
    """
    m, noise, rng = _start(n_samples_per_dim, noise, generator, ("n_samples_per_dim", "noise"))
    limit = check_non_negative("range_limit", range_limit)
    lin = torch.linspace(-limit, limit, m, dtype=_F64)
    xx, yy = torch.meshgrid(lin, lin, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1).to(rng.device)
    if noise > 0:
        points = points + noise * rng.randn(m * m, 2)
    return _finish(points, device, dtype)


def make_two_spirals(
    n_samples: int = 2000,
    noise: float = 0.1,
    n_turns: float = 1.5,
    radius: float = 3.0,
    *,
    generator: torch.Generator | None = None,
    device: Any = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Two interleaved Archimedean spirals, point-symmetric about the origin.

    With $s = \sqrt{u}$, $u \sim U(0,1)$ (uniform density along the area the arms
    sweep), $\theta = 2\pi T s$ and radius $R s$, the first ``ceil(n/2)`` points
    are $R s(\cos\theta, \sin\theta)$ and the rest their mirror image
    $-R s(\cos\theta, \sin\theta)$; shuffled, then ``+ noise * xi``.

    Args:
        n_samples: Number of points (>= 1).
        noise: Standard deviation of the Gaussian noise (>= 0).
        n_turns: Turns ``T`` of each arm (> 0).
        radius: Outer radius ``R`` (> 0).
        generator: Source of randomness (default: the global RNG).
        device: Device of the result (default: the generator's device, else CPU).
        dtype: Floating dtype of the result (default: ``torch.get_default_dtype()``).

    Example:
        >>> make_two_spirals(100, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([100, 2])

    References:
        Lang & Witbrock, "Learning to Tell Two Spirals Apart", 1988.
    """
    n, noise, rng = _start(n_samples, noise, generator)
    n_turns = check_positive("n_turns", n_turns)
    radius = check_positive("radius", radius)
    s = torch.sqrt(rng.rand(n))
    theta = 2 * math.pi * n_turns * s
    points = (radius * s)[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    sign = torch.ones(n, 1, dtype=_F64, device=rng.device)
    sign[(n + 1) // 2 :] = -1
    points = (points * sign)[rng.randperm(n)]
    return _finish(points + noise * rng.randn(n, 2), device, dtype)
