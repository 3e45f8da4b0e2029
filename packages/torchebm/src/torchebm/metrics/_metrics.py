"""The metrics of `torchebm.metrics` (see the package docstring)."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import torch

from torchebm.core import warn_once
from torchebm.core._module import warn_user
from torchebm.core.errors import (
    ConfigurationError,
    NonFiniteError,
    ShapeError,
    check_finite,
    check_finite_tensor,
    check_generator,
    check_in,
    check_int,
    check_positive,
    check_tensor,
)
from torchebm.flows._utils import outside_autocast

__all__ = [
    "mmd2",
    "median_bandwidth",
    "energy_distance",
    "sliced_wasserstein",
    "kernel_two_sample_test",
    "TwoSampleTestResult",
    "grid_log_partition",
    "grid_nll",
    "GridLogPartition",
    "GridNLL",
]

_ESTIMATORS = ("unbiased", "biased")
_BLOCK = 1 << 22  # pairwise entries per block (32 MiB in float64)
_MEDIAN_POINTS = 2048
# `grid_log_partition` warns (RuntimeWarning) when its error estimate exceeds this (nats)
_GRID_ERROR_WARNING = 1e-2
_GRID_TAIL_WARNING = -20.0  # exp(-20) = 2e-9 of the peak density on the box's boundary


_AUTOCAST_DEVICES = ("cpu", "cuda", "mps", "xpu")


_Metric = TypeVar("_Metric", bound=Callable[..., Any])


def _outside_autocast(fn: _Metric) -> _Metric:
    """``fn`` with an ambient autocast turned off: a metric computes in its own dtype (float32
    at least); under a bfloat16 autocast its matrix products ran in bfloat16 (energy distance
    68 % off, mmd2 120 %) and a grid's energies were rounded."""

    @functools.wraps(fn)
    def outside(*args: Any, **kwargs: Any) -> Any:
        with outside_autocast(*_AUTOCAST_DEVICES):
            return fn(*args, **kwargs)

    return cast(_Metric, outside)  # the metric's own signature, for type checkers


# --------------------------------------------------------------------------- input
def _warn_no_autograd(owner: str, **inputs: Any) -> None:
    """Warn once per ``owner`` when grad mode is on and an input requires grad: the metrics
    run in blocks without autograd (memory), so their value carries no gradient."""
    if not torch.is_grad_enabled():
        return
    tracked = [k for k, v in inputs.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    if tracked:
        names = " and ".join(tracked)
        warn_once(
            f"torchebm.metrics.{owner}.no_autograd",
            f"{owner} is computed without autograd (blockwise, for memory): it is not "
            f"differentiable and its value carries no gradient to {names}, which "
            f"require{'s' if len(tracked) == 1 else ''} grad; a loss that adds it trains "
            f"nothing through it. Pass {names} detached (e.g. .detach()) to silence this "
            "warning",
            UserWarning,
        )


def _flat(name: str, v: Any) -> torch.Tensor:
    """``v`` validated, detached (no autograd: see `_warn_no_autograd`), as ``(N, D)``."""
    if isinstance(v, torch.Tensor) and v.ndim == 1:
        raise ShapeError(
            f"{name} must have shape (N, *event_shape), got shape {tuple(v.shape)}: pass "
            f"one-dimensional samples as {name}[:, None]"
        )
    check_tensor(name, v, min_ndim=2, floating=True)
    if v.shape[1:].numel() == 0:  # every distance between zero-feature samples is 0: no metric
        raise ShapeError(f"{name} must have at least one feature, got shape {tuple(v.shape)}")
    v = v.detach().reshape(v.shape[0], -1)
    check_finite_tensor(name, v)
    return v


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for the floating dtypes below 32 bits (float16, bfloat16: summing rows of
    pairwise terms in them was off by up to 20 %), else ``dtype``."""
    return torch.float32 if torch.finfo(dtype).bits < 32 else dtype


def _pair(
    owner: str, x: Any, y: Any, min_samples: int = 2, **others: Any
) -> tuple[torch.Tensor, torch.Tensor, int, torch.dtype]:
    """Validate and flatten two sample batches to ``(N, D)`` / ``(M, D)`` of one compute
    dtype, then `_normalise` them: ``(x', y', e, dtype)`` with ``x = x' 2^e + shift`` and
    ``dtype`` the promoted dtype of the samples (that of the result; the compute dtype is
    float32 when it is float16 or bfloat16). Warns when an input (or one of ``others``)
    requires grad (`_warn_no_autograd`)."""
    xf, yf = _flat("x", x), _flat("y", y)
    if min(x.ndim, y.ndim) > 2 and x.shape[1:] != y.shape[1:]:  # e.g. NCHW beside NHWC
        raise ShapeError(
            f"x and y must have one event shape, got x of shape {tuple(x.shape)} and y of shape "
            f"{tuple(y.shape)} (flat (N, D) samples are compared with any event shape of D "
            "features; permute one batch to the other's layout)"
        )
    if xf.shape[1] != yf.shape[1]:
        raise ShapeError(
            f"x and y must have the same number of features, got x of shape "
            f"{tuple(x.shape)} ({xf.shape[1]} features) and y of shape {tuple(y.shape)} "
            f"({yf.shape[1]} features)"
        )
    if xf.device != yf.device:
        raise ConfigurationError(f"x and y must be on one device, got {xf.device} and {yf.device}")
    if xf.shape[0] < min_samples or yf.shape[0] < min_samples:
        raise ShapeError(
            f"x and y need at least {min_samples} samples each, got {xf.shape[0]} and {yf.shape[0]}"
        )
    _warn_no_autograd(owner, x=x, y=y, **others)
    dtype = torch.promote_types(xf.dtype, yf.dtype)
    work = _compute_dtype(dtype)
    return (*_normalise(xf.to(work), yf.to(work)), dtype)


def _pow2(v: torch.Tensor, e: int) -> torch.Tensor:
    """``v * 2**e``, exact (two factors, each inside the range of every float dtype)."""
    return v * 2.0 ** (e // 2) * 2.0 ** (e - e // 2)


def _normalise(xf: torch.Tensor, yf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    r"""``(x', y', e)``: both samples centred and multiplied by $2^{-e}$, their largest
    magnitude in $[1/2, 1)$.

    Every metric here is translation invariant, and centring keeps
    $|a|^2 + |b|^2 - 2ab$ accurate. The power-of-two scale is exact and keeps squared
    distances inside the dtype's range at any scale of the data (float32 samples of scale
    1e20 overflow when squared, of scale 1e-30 underflow to 0): a metric of degree $k$ in
    the data's units is $2^{ke}$ times its value on ``x'``, ``y'``. It is applied before
    the centring too, so that the mean of samples near the dtype's maximum cannot overflow.
    """
    e = 0
    for centre in (False, True):
        if centre:
            shift = 0.5 * (xf.mean(0) + yf.mean(0))
            xf, yf = xf - shift, yf - shift
        if xf.numel() == 0:  # no features: every distance is 0
            return xf, yf, 0
        top = max(float(xf.abs().max()), float(yf.abs().max()))  # host reads: no hot path
        k = math.frexp(top)[1] if top > 0 else 0
        xf, yf, e = _pow2(xf, -k), _pow2(yf, -k), e + k
    return xf, yf, e


def _unscaled(name: str, value: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """``value * 2**k`` (a metric of the scaled samples, back in the data's units) in ``dtype``,
    or `NonFiniteError` when the dtype cannot represent it (instead of an inf)."""
    out = _pow2(value, k)
    res = out.to(dtype)
    if not bool(torch.isfinite(res)):
        raise NonFiniteError(
            f"{name} of these samples is {float(out):.6g}, beyond the range of {dtype}: "
            "pass float64 samples (or rescale them)"
        )
    return res


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(n, m)``, clamped at 0 (one fresh tensor)."""
    d2 = torch.addmm(b.square().sum(1)[None, :], a, b.T, alpha=-2.0)
    return d2.add_(a.square().sum(1)[:, None]).clamp_(min=0.0)


def _block_sum(
    a: torch.Tensor, b: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``sum_ij fn(|a_i - b_j|^2)`` over row blocks; ``fn`` maps ``(r, m)`` to ``(..., r, m)``.

    When ``a is b`` the diagonal squared distances are set to exactly 0 (the expanded
    formula leaves rounding noise there).
    """
    rows = max(1, _BLOCK // max(1, b.shape[0]))
    same = a is b
    # each row summed in the data's dtype (m terms, pairwise summation), the rows and blocks
    # in float64: the metrics are small differences of these sums, and a float32 total of
    # 10^8 terms would carry an error above them (summing every term in float64 costs 1.7x
    # the time of the whole metric; MPS has no float64)
    acc = a.dtype if a.device.type == "mps" else torch.float64
    total = torch.zeros((), dtype=acc, device=a.device)
    for i in range(0, a.shape[0], rows):
        d2 = _sq_dists(a[i : i + rows], b)
        if same:
            r = torch.arange(d2.shape[0], device=d2.device)
            d2[r, r + i] = 0.0
        total = total + fn(d2).sum(dim=-1).sum(dim=-1, dtype=acc)
    return total


# --------------------------------------------------------------------------- MMD
@_outside_autocast
def median_bandwidth(
    x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Median heuristic: the median pairwise distance of the pooled sample.

    $\ell = \operatorname{median}\{\|z_i - z_j\| : i < j\}$ over $z = x \cup y$. Above
    2048 pooled points a random subset of 2048 (drawn with ``generator``) is used; without
    a generator the subset is a fixed draw (seed 0), so the bandwidth, and the metrics that
    use it, are reproducible and the global random state is left alone.
    Float16/bfloat16 samples are computed in float32.

    Not differentiable (an evaluation tool, computed without autograd): no gradient.

    Args:
        x: Samples ``(N, *event_shape)``.
        y: Samples ``(M, *event_shape)``.
        generator: Randomness of the subset (only used above 2048 points; a CPU generator;
            ``None``: the fixed draw of seed 0).

    Returns:
        The bandwidth, a positive 0-d tensor in the samples' (promoted) dtype.

    Warns:
        UserWarning: once per process, when grad mode is enabled and an input requires
            grad (its value would silently train nothing); detach the input to silence it.

    Raises:
        ConfigurationError: the median is 0 (at least half of the pooled pairs coincide,
            e.g. every point is the same): the heuristic gives no length scale, so no
            bandwidth is made up; pass an explicit one to the metric instead.

    Example:
        >>> x = torch.tensor([[0.0], [1.0]]); y = torch.tensor([[3.0], [4.0]])
        >>> float(median_bandwidth(x, y))
        2.5

    References:
        Gretton et al., "A Kernel Two-Sample Test", JMLR 2012 (Section 8).
    """
    xf, yf, e, dtype = _pair("median_bandwidth", x, y, min_samples=1)
    check_generator(generator)  # was unchecked: ignored up to 2048 points, a torch error above
    med = _median_bandwidth(torch.cat([xf, yf]), generator)
    return _unscaled("median_bandwidth", med, e, dtype)


def _median_bandwidth(z: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if z.shape[0] > _MEDIAN_POINTS:  # a fixed subset by default: a metric is reproducible
        generator = torch.Generator().manual_seed(0) if generator is None else generator
        idx = torch.randperm(z.shape[0], generator=generator, device="cpu")[:_MEDIAN_POINTS]
        z = z[idx.to(z.device)]
    n = z.shape[0]
    iu = torch.triu_indices(n, n, offset=1, device=z.device)
    d2 = _sq_dists(z, z)[iu[0], iu[1]]
    # the mean of the two middle order statistics (numpy's median; torch's takes the lower),
    # selected among the squared distances (sqrt is monotone: the same values, no sort)
    k = d2.shape[0]
    lo = d2.kthvalue((k - 1) // 2 + 1).values.sqrt()
    hi = lo if k % 2 else d2.kthvalue(k // 2 + 1).values.sqrt()  # one middle one for odd k
    med = 0.5 * (lo + hi)
    if not bool(med > 0):  # one host read: a made-up scale would set the metric silently
        zeros = int((d2 == 0).sum())
        raise ConfigurationError(
            f"the median heuristic has no length scale here: {zeros} of the {k} pairwise "
            f"distances of the pooled x and y are 0, so their median is 0; pass a positive "
            f"bandwidth instead of 'median'"
        )
    return med


def _bandwidths(
    bandwidth: Any, xf: torch.Tensor, yf: torch.Tensor, e: int, generator: torch.Generator | None
) -> torch.Tensor:
    """The kernel bandwidths in the data's units as a 1-D tensor (``"median"``, a number, a
    sequence, a tensor); ``xf``, ``yf`` are the data times ``2**-e`` (`_normalise`)."""
    if isinstance(bandwidth, str):
        check_in("bandwidth", bandwidth, ["median"])
        return _pow2(_median_bandwidth(torch.cat([xf, yf]), generator), e).reshape(1)
    if not isinstance(bandwidth, (torch.Tensor, Sequence, numbers.Real)):
        if hasattr(bandwidth, "__array__"):  # a numpy array of bandwidths
            bandwidth = torch.as_tensor(bandwidth)
    if isinstance(bandwidth, torch.Tensor):
        if bandwidth.ndim > 1:
            raise ShapeError(
                f"bandwidth must be a number or a 0-d or 1-D tensor of bandwidths, got a "
                f"tensor of shape {tuple(bandwidth.shape)}; pass bandwidth.flatten() to use "
                "each entry as one bandwidth of the kernel mixture"
            )
        h = bandwidth.detach().to(device=xf.device, dtype=xf.dtype).reshape(-1)
    elif isinstance(bandwidth, Sequence):  # of numbers or one-element tensors
        items = [
            b.item() if isinstance(b, torch.Tensor) and b.numel() == 1 else b for b in bandwidth
        ]
        h = torch.tensor([check_positive("bandwidth", b) for b in items], dtype=xf.dtype)
        h = h.to(xf.device)
    else:
        h = torch.tensor([check_positive("bandwidth", bandwidth)], dtype=xf.dtype)
        h = h.to(xf.device)
    if h.numel() == 0 or not bool(torch.isfinite(h).all()) or not bool((h > 0).all()):
        raise ConfigurationError(
            f"bandwidth must be 'median', a positive number or a non-empty sequence of positive "
            f"numbers, got {bandwidth!r}"
        )
    return h


def _coefficient(h: float, e: int, big: float) -> float:
    """``-1 / (2 (h 2^-e)^2)``: the Gaussian kernel's factor on the squared distances of data
    scaled by ``2**-e``, in Python floats and capped at ``-big`` (the dtype's largest value).

    The cap is reached only by a bandwidth below about ``1e-19`` (float32) of the data's
    scale, where every kernel value between points the dtype tells apart is 0 either way;
    a bandwidth beyond the data's scale gives a factor that rounds to 0 (kernel values 1)."""
    try:
        hs = math.ldexp(h, -e)
    except OverflowError:
        return 0.0
    sq = hs * hs
    return -big if sq == 0.0 else max(-0.5 / sq, -big)


def _rbf(h: torch.Tensor, e: int, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """The kernel average ``mean_k exp(-d2 / (2 h_k^2))`` as a map of squared distances of
    the data scaled by ``2**-e`` (``h`` in the data's units).

    The map may overwrite its argument (a fresh block of squared distances).
    """
    big = torch.finfo(dtype).max
    coeffs = [_coefficient(hk, e, big) for hk in h.tolist()]
    if len(coeffs) == 1:
        return lambda d2: d2.mul_(coeffs[0]).exp_()

    def k(d2: torch.Tensor) -> torch.Tensor:
        acc = torch.exp(d2 * coeffs[0])
        for c in coeffs[1:]:
            acc.add_(torch.exp(d2 * c))
        return acc.div_(len(coeffs))

    return k


@_outside_autocast
def mmd2(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    bandwidth: Any = "median",
    estimator: str = "unbiased",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Squared maximum mean discrepancy with a (mixture of) Gaussian kernel(s).

    With $k(a, b) = \frac1K \sum_{k=1}^K \exp\!\big(-\|a-b\|^2 / (2\ell_k^2)\big)$,

    $$
    \mathrm{MMD}^2(P, Q) = \mathbb E\,k(X, X') + \mathbb E\,k(Y, Y') - 2\,\mathbb E\,k(X, Y).
    $$

    The unbiased (U-statistic) estimator drops the diagonal terms $k(x_i, x_i)$ of the
    within-sample means, so it is 0 in expectation when $P = Q$ (and can be negative); the
    biased (V-statistic) estimator keeps them and is $\ge 0$. Mixing several bandwidths
    (`bandwidth=[0.1, 0.5, 1.0]`) keeps the test sensitive at several length scales.
    A given bandwidth is in the data's units: the kernel is evaluated on the samples
    rescaled by a power of two and on the bandwidth rescaled with them (exact: it depends
    on $\|a-b\|/\ell$ only); the median heuristic is scale-equivariant anyway.
    Float16/bfloat16 samples are computed in float32 (summed in their own dtype, a value
    near 0 was off by up to 20 %) and the value is rounded to their dtype at the end.

    Not differentiable (an evaluation tool, computed without autograd): no gradient.

    Args:
        x: Samples ``(N, *event_shape)``, ``N >= 2``.
        y: Samples ``(M, *event_shape)``, ``M >= 2``, of ``x``'s event shape (or flat, of its size).
        bandwidth: ``"median"`` (the median pairwise distance of the pooled sample, see
            `median_bandwidth`; an error when that median is 0), a positive number, or a
            sequence / 0-d or 1-D tensor of them (a 2-D tensor is a `ShapeError`, not
            flattened).
        estimator: ``"unbiased"`` (U-statistic) or ``"biased"`` (V-statistic).
        generator: Randomness of the median heuristic's subset (above 2048 points; a CPU
            generator; ``None``: a fixed draw, seed 0).

    Returns:
        $\widehat{\mathrm{MMD}}^2$, a 0-d tensor on ``x``'s device in the samples'
        (promoted) dtype, without gradient.

    Warns:
        UserWarning: once per process, when grad mode is enabled and an input requires
            grad (its value would silently train nothing); detach the input to silence it.

    Raises:
        TypeError: ``x``/``y`` not floating tensors.
        ShapeError: fewer than 2 samples, event shapes that differ, or a ``bandwidth``
            tensor with more than one dimension.
        NonFiniteError: NaN or inf in ``x`` or ``y``.
        ConfigurationError: a bandwidth that is not positive (a zero median too), an unknown
            estimator.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(300, 2, generator=g, dtype=torch.float64)
        >>> y = torch.randn(300, 2, generator=g, dtype=torch.float64)
        >>> abs(float(mmd2(x, y, bandwidth=1.0))) < 0.01
        True

    References:
        Gretton, Borgwardt, Rasch, Schölkopf & Smola, "A Kernel Two-Sample Test", JMLR 13,
        2012 (Lemma 6 and eq. 3-5).
    """
    check_in("estimator", estimator, _ESTIMATORS)
    xf, yf, e, dtype = _pair("mmd2", x, y, bandwidth=bandwidth)
    check_generator(generator)
    k = _rbf(_bandwidths(bandwidth, xf, yf, e, generator), e, xf.dtype)
    n, m = xf.shape[0], yf.shape[0]
    sxx, syy, sxy = _block_sum(xf, xf, k), _block_sum(yf, yf, k), _block_sum(xf, yf, k)
    if estimator == "unbiased":  # k(a, a) = 1 for every Gaussian kernel
        out = (sxx - n) / (n * (n - 1)) + (syy - m) / (m * (m - 1)) - 2 * sxy / (n * m)
    else:
        out = sxx / n**2 + syy / m**2 - 2 * sxy / (n * m)
    return out.to(dtype)


# --------------------------------------------------------------------------- energy distance
@_outside_autocast
def energy_distance(
    x: torch.Tensor, y: torch.Tensor, *, estimator: str = "unbiased"
) -> torch.Tensor:
    r"""Energy distance between the laws of ``x`` and ``y``.

    $$
    \mathcal E(P, Q) = 2\,\mathbb E\|X - Y\| - \mathbb E\|X - X'\| - \mathbb E\|Y - Y'\|,
    $$

    which is $\ge 0$ with equality iff $P = Q$ (finite first moments); it is in the units
    of the data. The unbiased estimator averages the within-sample distances over
    $i \ne j$ (0 in expectation when $P = Q$, can be negative); the biased one over all
    pairs (the V-statistic, $\ge 0$). Float16/bfloat16 samples are computed in float32
    and the value is rounded to their dtype at the end.

    Not differentiable (an evaluation tool, computed without autograd): no gradient.

    Args:
        x: Samples ``(N, *event_shape)``, ``N >= 2``.
        y: Samples ``(M, *event_shape)``, ``M >= 2``, of ``x``'s event shape (or flat, of its size).
        estimator: ``"unbiased"`` or ``"biased"``.

    Returns:
        $\widehat{\mathcal E}$, a 0-d tensor in the samples' (promoted) dtype, without
        gradient.

    Warns:
        UserWarning: once per process, when grad mode is enabled and an input requires
            grad (its value would silently train nothing); detach the input to silence it.

    Raises:
        TypeError, ShapeError, NonFiniteError, ConfigurationError: as `mmd2`;
            `NonFiniteError` also when the distance exceeds the dtype's range.

    Example:
        >>> x = torch.tensor([[0.0], [0.0]]); y = torch.tensor([[1.0], [1.0]])
        >>> float(energy_distance(x, y))
        2.0

    References:
        Székely & Rizzo, "Energy statistics: A class of statistics based on distances",
        Journal of Statistical Planning and Inference 143(8), 2013.
    """
    check_in("estimator", estimator, _ESTIMATORS)
    xf, yf, e, dtype = _pair("energy_distance", x, y)
    n, m = xf.shape[0], yf.shape[0]
    dist: Callable[[torch.Tensor], torch.Tensor] = torch.Tensor.sqrt_
    sxx, syy, sxy = _block_sum(xf, xf, dist), _block_sum(yf, yf, dist), _block_sum(xf, yf, dist)
    if estimator == "unbiased":  # the diagonal distances are 0: only the divisor changes
        out = 2 * sxy / (n * m) - sxx / (n * (n - 1)) - syy / (m * (m - 1))
    else:
        out = 2 * sxy / (n * m) - sxx / n**2 - syy / m**2
    return _unscaled("energy_distance", out, e, dtype)  # degree 1 in the data


# --------------------------------------------------------------------------- sliced W
def _wasserstein_1d_pp(
    u: torch.Tensor, v: torch.Tensor, p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""$W_p^p$ between the empirical laws of the columns of ``u (N, P)`` and ``v (M, P)``,
    as ``(s, w)`` with $W_p^p = s^p w$: ``s`` the largest quantile gap of the block (0-d),
    ``w`` ``(P,)`` the means of $(|\text{gap}| / s)^p$ (a large $p$ underflowed $|\text{gap}|^p$
    to 0: float32 at $p = 64$).

    Exact: both quantile functions are constant between the merged levels $i/N$, $j/M$.
    """
    n, m = u.shape[0], v.shape[0]
    us, vs = u.sort(dim=0).values, v.sort(dim=0).values
    if n == m:
        gaps = (us - vs).abs()
        scale = gaps.max().clamp(min=torch.finfo(gaps.dtype).tiny)
        return scale, (gaps / scale).pow(p).mean(0)
    dt = u.dtype
    levels = (
        torch.cat(
            [
                torch.arange(1, n + 1, dtype=dt, device=u.device) / n,
                torch.arange(1, m + 1, dtype=dt, device=u.device) / m,
            ]
        )
        .sort()
        .values
    )
    widths = torch.diff(levels, prepend=levels.new_zeros(1))
    mid = levels - 0.5 * widths
    iu = (mid * n).floor().long().clamp_(0, n - 1)
    iv = (mid * m).floor().long().clamp_(0, m - 1)
    gaps = (us[iu] - vs[iv]).abs()
    scale = gaps.max().clamp(min=torch.finfo(gaps.dtype).tiny)
    return scale, ((gaps / scale).pow(p) * widths[:, None]).sum(0)


@_outside_autocast
def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_projections: int = 128,
    p: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Sliced $p$-Wasserstein distance with random directions.

    $$
    \mathrm{SW}_p(P, Q) = \Big(\mathbb E_{\theta \sim \mathcal U(S^{D-1})}\,
    W_p^p(\theta_\# P, \theta_\# Q)\Big)^{1/p},
    $$

    estimated with ``n_projections`` uniform directions; each 1-D $W_p^p$ between the
    projected empirical laws is exact (sorted samples, merged quantile levels when
    $N \ne M$). Its Monte Carlo error over directions shrinks as $1/\sqrt{\text{n\_projections}}$.
    The directions are drawn in float32 for every dtype (float32 and float64 copies of the
    samples see the same directions); float16/bfloat16 samples are computed in float32 and
    the value is rounded to their dtype at the end. Any $p$: each block of directions is
    summed relative to its largest gap.

    Not differentiable (an evaluation tool, computed without autograd): no gradient.

    Args:
        x: Samples ``(N, *event_shape)``, ``N >= 2``.
        y: Samples ``(M, *event_shape)``, ``M >= 2``, of ``x``'s event shape (or flat, of its size).
        n_projections: Number of random directions (>= 1).
        p: Order $p \ge 1$.
        generator: Randomness of the directions (on ``x``'s device).

    Returns:
        $\widehat{\mathrm{SW}}_p$, a 0-d tensor in the samples' (promoted) dtype, without
        gradient.

    Warns:
        UserWarning: once per process, when grad mode is enabled and an input requires
            grad (its value would silently train nothing); detach the input to silence it.

    Raises:
        TypeError, ShapeError, NonFiniteError, ConfigurationError: as `energy_distance`.

    Example:
        >>> x = torch.zeros(4, 3); y = torch.ones(4, 3)
        >>> g = torch.Generator().manual_seed(0)
        >>> 0.0 < float(sliced_wasserstein(x, y, generator=g)) < 3 ** 0.5
        True

    References:
        Bonneel, Rabin, Peyré & Pfister, "Sliced and Radon Wasserstein Barycenters of
        Measures", Journal of Mathematical Imaging and Vision 51, 2015.
    """
    check_int("n_projections", n_projections, minimum=1)
    p = check_positive("p", p)
    if p < 1:
        raise ConfigurationError(f"p must be >= 1, got {p}")
    xf, yf, e, dtype = _pair("sliced_wasserstein", x, y)
    check_generator(generator, xf.device)
    theta = torch.randn(
        xf.shape[1], n_projections, generator=generator, device=xf.device, dtype=torch.float32
    ).to(xf.dtype)
    theta = theta / theta.norm(dim=0, keepdim=True).clamp(min=torch.finfo(xf.dtype).tiny)
    cols = max(1, _BLOCK // (xf.shape[0] + yf.shape[0]))
    scale, total = None, torch.zeros((), dtype=xf.dtype, device=xf.device)
    for th in theta.split(cols, dim=1):  # sum of W_p^p = scale^p total, rescaled per block
        s, w = _wasserstein_1d_pp(xf @ th, yf @ th, p)
        if scale is None:
            scale, total = s, w.sum()
        else:
            new = torch.maximum(scale, s)
            total = total * (scale / new).pow(p) + w.sum() * (s / new).pow(p)
            scale = new
    value = cast(torch.Tensor, scale) * (total / n_projections).pow(1.0 / p)
    return _unscaled("sliced_wasserstein", value, e, dtype)


# --------------------------------------------------------------------------- test
@dataclass(frozen=True)
class TwoSampleTestResult:
    """Outcome of `kernel_two_sample_test`.

    Attributes:
        statistic: The unbiased $\\widehat{\\mathrm{MMD}}^2$ of the observed split (0-d tensor
            in the samples' dtype).
        p_value: $(1 + \\#\\{b : T_b \\ge T\\}) / (1 + B)$ over ``B`` permutations (a float).
        null_statistics: The ``B`` permuted statistics ``(B,)``, in the samples' dtype.
        bandwidth: The kernel bandwidths used ``(K,)``.
    """

    statistic: torch.Tensor
    p_value: float
    null_statistics: torch.Tensor = field(repr=False)  # n_permutations values
    bandwidth: torch.Tensor


@_outside_autocast
def kernel_two_sample_test(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_permutations: int = 500,
    bandwidth: Any = "median",
    generator: torch.Generator | None = None,
) -> TwoSampleTestResult:
    r"""Kernel two-sample test of $H_0: P = Q$ with a permutation p-value.

    The statistic is the unbiased $\widehat{\mathrm{MMD}}^2$ (see `mmd2`). Under $H_0$ the
    pooled sample is exchangeable, so recomputing the statistic after ``n_permutations``
    random relabellings draws from its null distribution; the p-value
    $(1 + \#\{T_b \ge T\}) / (1 + B)$ is valid at every sample size
    ($\Pr(p \le \alpha) \le \alpha$ under $H_0$). The pooled kernel matrix is built once
    in the samples' dtype (memory $(N+M)^2$ entries and one block of rows: the pairwise
    distances are turned into kernel values in place, the float64 sums read one block at
    a time), the median bandwidth is permutation invariant.
    The statistics are sums over that matrix accumulated in float64 (float32 sums of
    $10^8$ kernel values are off by ~1e-7, a few percent of a statistic near 0), returned
    in the samples' dtype; the p-value compares the returned values. Float16/bfloat16
    samples are computed in float32 (kernel matrix included); the statistics and
    bandwidths are returned in their dtype.

    Not differentiable (an evaluation tool, computed without autograd): no gradient.

    Args:
        x: Samples ``(N, *event_shape)``, ``N >= 2``.
        y: Samples ``(M, *event_shape)``, ``M >= 2``.
        n_permutations: Number of permutations ``B`` (>= 1).
        bandwidth: As in `mmd2`.
        generator: Randomness of the permutations (a CPU generator).

    Returns:
        A `TwoSampleTestResult` (tensors without gradient).

    Warns:
        UserWarning: once per process, when grad mode is enabled and an input requires
            grad (its value would silently train nothing); detach the input to silence it.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(100, 2, generator=g), torch.randn(100, 2, generator=g) + 1
        >>> kernel_two_sample_test(x, y, n_permutations=200, generator=g).p_value < 0.01
        True

    References:
        Gretton, Borgwardt, Rasch, Schölkopf & Smola, "A Kernel Two-Sample Test", JMLR 13,
        2012 (Section 5).
    """
    b = check_int("n_permutations", n_permutations, minimum=1)
    xf, yf, e, dtype = _pair("kernel_two_sample_test", x, y, bandwidth=bandwidth)
    check_generator(generator)
    h = _bandwidths(bandwidth, xf, yf, e, generator)
    z = torch.cat([xf, yf])
    d2 = _sq_dists(z, z)
    d2.fill_diagonal_(0.0)
    kz = _map_rows_in_place(d2, _rbf(h, e, z.dtype))
    stats = _permutation_statistics(kz, xf.shape[0], b, generator)
    t, null = stats[0].to(dtype), stats[1:].to(dtype)
    p_value = (1.0 + float((null >= t).sum())) / (1.0 + b)
    return TwoSampleTestResult(
        statistic=t, p_value=p_value, null_statistics=null, bandwidth=h.to(dtype)
    )


def _map_rows_in_place(d2: torch.Tensor, k: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``k(d2)`` written over ``d2`` one block of rows at a time: no full-size temporary,
    whatever the number of bandwidths (`_rbf`'s map may overwrite its argument)."""
    rows = max(1, _BLOCK // max(1, d2.shape[1]))
    for i in range(0, d2.shape[0], rows):
        block = d2[i : i + rows]
        out = k(block)
        if out is not block:
            block.copy_(out)
    return d2


def _permutation_statistics(
    kz: torch.Tensor, n: int, b: int, generator: torch.Generator | None
) -> torch.Tensor:
    r"""The unbiased $\widehat{\mathrm{MMD}}^2$ of the observed split (the first ``n`` rows of
    the pooled kernel matrix ``kz``) and of ``b`` random splits, ``(b + 1,)`` in float64.

    With $a$ the 0/1 indicator of a split's first sample and $c = 1 - a$, the three sums are
    $a^\top K a$, $a^\top K c = a^\top r - a^\top K a$ and
    $c^\top K c = S - 2 a^\top r + a^\top K a$ ($r = K\mathbf 1$, $S = \mathbf 1^\top r$):
    one product per split. The statistic is a difference of sums of $(N+M)^2$ kernel values
    about $N$ times smaller than each of them, so every sum is accumulated in float64 (in
    float32 their rounding, ~1e-7 for $10^8$ entries, was a few percent of a statistic near
    0); ``kz`` stays in the data's dtype, converted one block of rows at a time (MPS,
    without float64, keeps its dtype).
    """
    total, m = kz.shape[0], kz.shape[0] - n
    acc = kz.dtype if kz.device.type == "mps" else torch.float64
    rows = max(1, _BLOCK // total)
    # kz's rows in ``acc`` one block at a time, always in the same buffer: kz.sum(1,
    # dtype=float64) converted the whole matrix (2x its size), and a fresh block per step
    # left glibc's heap at 2x the matrix at random (freed blocks not reused)
    buf = torch.empty((min(rows, total), total), dtype=acc, device=kz.device)

    def block(j: int) -> torch.Tensor:
        return buf[: min(rows, total - j)].copy_(kz[j : j + rows])

    r = torch.cat([block(j).sum(1) for j in range(0, total, rows)])
    s = r.sum()
    out = []
    for start in range(0, b + 1, rows):  # the splits in the generator's order, chunk by chunk
        labels = torch.zeros(min(rows, b + 1 - start), total, dtype=acc, device=kz.device)
        for i in range(labels.shape[0]):
            if start + i == 0:
                labels[0, :n] = 1.0
            else:
                perm = torch.randperm(total, generator=generator, device="cpu")[:n]
                labels[i, perm.to(kz.device)] = 1.0
        ka = labels.new_zeros(labels.shape)  # labels @ kz, one block of kz's rows at a time
        for j in range(0, total, rows):
            ka.addmm_(labels[:, j : j + rows], block(j))
        q, ar = (ka * labels).sum(1), labels @ r
        out.append(
            (q - n) / (n * (n - 1)) + (s - 2 * ar + q - m) / (m * (m - 1)) - 2 * (ar - q) / (n * m)
        )
    return torch.cat(out)


# --------------------------------------------------------------------------- grid log Z
@dataclass(frozen=True)
class GridLogPartition:
    r"""$\log Z$ of a 2-D energy by quadrature (from `grid_log_partition`).

    Attributes:
        log_z: $\log \int e^{-E(x)}\,dx$ on the final grid (a float).
        error: $|\log Z_h - \log Z_{2h}|$, the change when the grid spacing is doubled
            (an estimate of the quadrature error of the coarser grid, so a bound in practice
            for the reported finer one; `grid_log_partition` warns above $10^{-2}$).
        extent: The box ``((x_lo, x_hi), (y_lo, y_hi))`` integrated over.
        n_points: Points per axis of the final grid.
        tail: $\max_{\partial B} (-E) - \max_B (-E)$, the log-density of the box boundary
            relative to the mode (the mass left outside is of order $e^{\text{tail}}$).
        peak: $\max_B (-E)$ on the final grid (`grid_nll` compares the data's $-E$ with it:
            a data point far above it sits in a mode that the grid missed).
    """

    log_z: float
    error: float
    extent: tuple[tuple[float, float], tuple[float, float]]
    n_points: int
    tail: float
    peak: float = math.nan


def _real_pair(name: str, v: Any) -> tuple[float, float]:
    """``(float, float)`` from a pair of finite real numbers, else a named error."""
    if not (isinstance(v, (tuple, list)) and len(v) == 2):
        raise TypeError(f"{name} must be a pair of numbers, got {v!r}")
    return check_finite(f"{name}[0]", v[0]), check_finite(f"{name}[1]", v[1])


def _model_place(model: Any, dtype: torch.dtype | None, device: Any) -> tuple[Any, Any]:
    if isinstance(model, torch.nn.Module):
        for t in (*model.parameters(), *model.buffers()):
            if t.is_floating_point():
                return dtype or t.dtype, device if device is not None else t.device
    return dtype or torch.float64, device if device is not None else "cpu"


def _energy_grid(model, xs, ys, dtype, device, chunk: int) -> torch.Tensor:
    """``E`` on the tensor grid ``xs x ys`` as a float64 ``(len(xs), len(ys))`` array."""
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1).to(device=device, dtype=dtype)
    out = []
    with torch.no_grad():
        for part in pts.split(chunk):
            e = model(part)
            if not isinstance(e, torch.Tensor) or e.shape != (part.shape[0],):
                got = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
                raise ShapeError(f"model must map (B, 2) points to energies (B,), got {got}")
            out.append(e.to(torch.float64).cpu())
    return torch.cat(out).reshape(len(xs), len(ys))


def _log_density_grid(model, box, n, dtype, device, chunk):
    """``(xs, ys, -E)`` on an ``n x n`` grid over ``box`` (``FloatingPointError`` on NaN, on
    E = -inf, and when no energy is finite)."""
    (x0, x1), (y0, y1) = box
    xs = torch.linspace(x0, x1, n, dtype=torch.float64)
    ys = torch.linspace(y0, y1, n, dtype=torch.float64)
    logp = -_energy_grid(model, xs, ys, dtype, device, chunk)
    if bool(torch.isnan(logp).any()):
        raise FloatingPointError("model returned NaN energies on the integration grid")
    if bool((logp == math.inf).any()):
        where = (logp == math.inf).nonzero()
        i, j = where[0].tolist()
        raise FloatingPointError(
            f"model returned E = -inf (an infinite density) at {len(where)} grid point(s), e.g. "
            f"({float(xs[i]):.4g}, {float(ys[j]):.4g}): the quadrature cannot integrate a "
            "singularity; pass a center= or extent= that puts no grid point on it"
        )
    if not math.isfinite(float(logp.max())):  # a given box: log Z = -inf, error NaN
        raise FloatingPointError(
            f"model has no finite energy on the integration grid over the box {box}"
        )
    return xs, ys, logp


def _crop(xs, ys, logp, log_tol):
    """The part of the grid where ``logp`` is within ``log_tol`` of its maximum, two cells
    wider on each side (clipped to the grid)."""
    keep = logp - logp.max() >= log_tol
    ix, iy = keep.any(1).nonzero().flatten(), keep.any(0).nonzero().flatten()
    n = len(xs)
    lo_x, hi_x = max(int(ix[0]) - 2, 0), min(int(ix[-1]) + 2, n - 1)
    lo_y, hi_y = max(int(iy[0]) - 2, 0), min(int(iy[-1]) + 2, n - 1)
    return (float(xs[lo_x]), float(xs[hi_x])), (float(ys[lo_y]), float(ys[hi_y]))


def _find_box(model, center, half, dtype, device, chunk, log_tol, max_doublings):
    """Grow the box until its boundary is negligible, then crop it to the mass: again on the
    cropped box while that halves a side (a peak narrower than the coarse cells)."""
    n = 129
    for k in range(max_doublings + 1):
        if k:
            half = (2 * half[0], 2 * half[1])
        box = (
            (center[0] - half[0], center[0] + half[0]),
            (center[1] - half[1], center[1] + half[1]),
        )
        xs, ys, logp = _log_density_grid(model, box, n, dtype, device, chunk)
        edge = torch.cat([logp[0], logp[-1], logp[:, 0], logp[:, -1]])
        if float(edge.max() - logp.max()) < log_tol:
            break
    else:  # ``half``: the last (largest) box tried
        raise ConfigurationError(
            f"the density exp(-E) is not negligible at the boundary of a box of half-widths "
            f"{half} (the largest tried, after {max_doublings} doublings): the energy may not "
            "be normalisable; pass extent= explicitly (or raise max_doublings)"
        )
    box = _crop(xs, ys, logp, log_tol)
    for _ in range(60):  # each pass halves a side at least: 60 reach float64's resolution
        xs, ys, logp = _log_density_grid(model, box, n, dtype, device, chunk)
        new = _crop(xs, ys, logp, log_tol)
        if all(b[1] - b[0] > 0.5 * (a[1] - a[0]) for a, b in zip(box, new)):
            return new
        box = new
    return box


@_outside_autocast
def grid_log_partition(
    model: Callable[[torch.Tensor], torch.Tensor],
    *,
    extent: tuple[tuple[float, float], tuple[float, float]] | None = None,
    n_points: int = 513,
    center: tuple[float, float] = (0.0, 0.0),
    half_width: float = 4.0,
    log_tol: float = -40.0,
    max_doublings: int = 12,
    chunk_size: int = 65536,
    dtype: torch.dtype | None = None,
    device: Any = None,
) -> GridLogPartition:
    r"""$\log Z = \log \int_{\mathbb R^2} e^{-E(x)}\,dx$ of a 2-D energy by the trapezoidal rule.

    The box is found from the energy unless ``extent`` is given: starting from the square of
    half-width ``half_width`` around ``center``, it doubles until $-E$ on its boundary is
    ``log_tol`` below its maximum (on a $129^2$ grid), then shrinks to the region where
    $-E$ is within ``log_tol`` of the maximum (plus two coarse cells), again on each
    shrunk box while a side halves, so that a peak narrower than the coarse cells is
    resolved. Where $-E$ on the boundary of the final grid is still above
    $\max(\text{log\_tol}, -20)$ relative to its maximum (a ridge narrower than the coarse
    cells crossing the boundary), the sides where it is move out by the box's width, up to
    ``max_doublings`` times. Mass that the first negligible boundary leaves outside (a mode
    far from the others, beyond that box) is not seen: pass ``extent`` for such densities.
    Nor is a mode inside the box narrower than the grid spacing, which no error estimate
    can show (a Gaussian of std $10^{-3}$ holding half the mass: $\log Z$ short by
    $\log 2$, estimate 0): the grid resolves features down to about its spacing (box width
    over ``n_points``); integrate around such a mode with its own ``extent``. On that box the
    trapezoidal rule with ``n_points`` per axis (odd, so that every second point is the
    grid of twice the spacing) gives $\log Z_h$ in float64 (``logsumexp``); the returned
    error is $|\log Z_h - \log Z_{2h}|$. For smooth densities that vanish at the boundary
    the trapezoidal rule converges faster than any power of $h$, so the error of $\log Z_h$
    is far below this estimate once the grid resolves the density. An error that is not
    small (near $\log 4$: the mass sits on a few grid points) means that it does not, e.g.
    a peak narrower than the spacing of the wide box that a heavy-tailed density needs;
    then both numbers are unreliable, and a `RuntimeWarning` says so whenever the estimate
    exceeds $10^{-2}$ nats (a log Z off by that much shifts every NLL by as much; below it
    the estimate is many orders above the actual error of a resolved density). Then raise
    ``n_points``; for a heavy-tailed energy pass a larger ``log_tol``: the default $-40$
    grows the box of $E = 3\log(1 + |x|^2)$ to $\pm 803$ (spacing 3.1 around a peak of
    width 1: $\log Z$ 2.29 instead of $\log(\pi/2) = 0.45$, error estimate 1.4), while
    ``log_tol=-20`` stops at $\pm 28.5$ and is $1.0 \cdot 10^{-6}$ short (the mass outside
    that box; the trapezoidal error is far smaller). The estimate does not
    count the mass outside the box (see ``tail``).

    Args:
        model: Energy ``E: (B, 2) -> (B,)`` (any callable; an ``nn.Module`` is evaluated in
            its parameters' dtype and device).
        extent: ``((x_lo, x_hi), (y_lo, y_hi))``; ``None`` finds it.
        n_points: Grid points per axis, odd, >= 33.
        center: Centre of the initial search box.
        half_width: Half-width of the initial search box (> 0).
        log_tol: Log-density threshold, relative to the maximum, that counts as negligible
            (< 0).
        max_doublings: How many times the box may double before giving up.
        chunk_size: Points per model call.
        dtype: Dtype of the points fed to ``model`` (default: the model's).
        device: Device of those points (default: the model's).

    Returns:
        A `GridLogPartition`.

    Warns:
        RuntimeWarning: the error estimate exceeds $10^{-2}$ nats (the message gives the
            estimate, the box, the spacing and what to change); $-E$ on the boundary of a
            box it found is still above $\max(\text{log\_tol}, -20)$ relative to its
            maximum after ``max_doublings`` moves (mass outside the box). A given ``extent``
            is the density's domain: its ``tail`` is reported, not warned about.

    Raises:
        ConfigurationError: bad arguments, or no box holds the mass (not normalisable).
        ShapeError: the model does not return ``(B,)`` energies.
        FloatingPointError: NaN energies on the grid, or $E = -\infty$ at a grid point.

    Example:
        >>> import math
        >>> from torchebm.core import GaussianModel
        >>> m = GaussianModel(torch.zeros(2), torch.eye(2), dtype=torch.float64)
        >>> r = grid_log_partition(m)
        >>> round(r.log_z, 6) == round(math.log(2 * math.pi), 6)
        True
    """
    n_points = check_int("n_points", n_points, minimum=33)
    if n_points % 2 == 0:
        raise ConfigurationError(f"n_points must be odd (nested grids), got {n_points}")
    half = check_positive("half_width", half_width)
    if check_finite("log_tol", log_tol) >= 0:  # numpy scalars too
        raise ConfigurationError(f"log_tol must be a negative number, got {log_tol!r}")
    check_int("max_doublings", max_doublings, minimum=0)
    chunk = check_int("chunk_size", chunk_size, minimum=1)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point torch.dtype or None, got {dtype!r}")
    dtype, device = _model_place(model, dtype, device)
    found = extent is None
    if extent is None:
        center = _real_pair("center", center)
        extent = _find_box(
            model, center, (half, half), dtype, device, chunk, log_tol, max_doublings
        )
    if not (isinstance(extent, (tuple, list)) and len(extent) == 2):
        raise TypeError(f"extent must be ((x_lo, x_hi), (y_lo, y_hi)), got {extent!r}")
    (x0, x1), (y0, y1) = _real_pair("extent[0]", extent[0]), _real_pair("extent[1]", extent[1])
    if not (x1 > x0 and y1 > y0):
        raise ConfigurationError(
            f"extent must be ((x_lo, x_hi), (y_lo, y_hi)) with lo < hi, got {extent}"
        )
    box = ((x0, x1), (y0, y1))
    res, edges = _grid_estimate(model, box, n_points, dtype, device, chunk)
    edge_tol = max(log_tol, _GRID_TAIL_WARNING)
    for _ in range(max_doublings if found else 0):  # a ridge the coarse search stepped over
        if res.tail < edge_tol:
            break
        box = _grow(box, edges, edge_tol)
        res, edges = _grid_estimate(model, box, n_points, dtype, device, chunk)
    _warn_if_inaccurate(res, edge_tol if found else None)  # a given box is the domain
    return res


def _grid_estimate(model, box, n, dtype, device, chunk) -> tuple[GridLogPartition, list[float]]:
    r"""The trapezoidal $\log Z$ on an ``n x n`` grid over ``box`` and the maximum of $-E$
    on each side (x_lo, x_hi, y_lo, y_hi) relative to the grid's maximum."""
    xs, ys, logp = _log_density_grid(model, box, n, dtype, device, chunk)
    (x0, x1), (y0, y1) = box
    fine = _trapezoid_log(logp, (x1 - x0) / (n - 1), (y1 - y0) / (n - 1))
    coarse = _trapezoid_log(logp[::2, ::2], 2 * (x1 - x0) / (n - 1), 2 * (y1 - y0) / (n - 1))
    peak = float(logp.max())
    edges = [float(side.max()) - peak for side in (logp[0], logp[-1], logp[:, 0], logp[:, -1])]
    res = GridLogPartition(fine, abs(fine - coarse), box, n, max(edges), peak)
    return res, edges


def _grow(box, edges: list[float], log_tol: float):
    """``box`` with each side where $-E$ is not negligible moved out by the box's width."""
    (x0, x1), (y0, y1) = box
    wx, wy = x1 - x0, y1 - y0
    x0, x1 = x0 - wx * (edges[0] >= log_tol), x1 + wx * (edges[1] >= log_tol)
    y0, y1 = y0 - wy * (edges[2] >= log_tol), y1 + wy * (edges[3] >= log_tol)
    return (x0, x1), (y0, y1)


def _warn_if_inaccurate(res: GridLogPartition, edge_tol: float | None) -> None:
    """A `RuntimeWarning` at the caller's line when ``res.error`` exceeds
    `_GRID_ERROR_WARNING` (the grid does not resolve the density; the value is unreliable)
    or when $-E$ on the boundary of a box it searched is not ``edge_tol`` below its maximum
    (mass outside; ``None``: a box the caller gave, the density's domain)."""
    (x0, x1), (y0, y1) = res.extent
    if edge_tol is not None and res.tail >= edge_tol:
        warn_user(
            f"grid_log_partition: exp(-E) on the boundary of the box (({x0:.4g}, {x1:.4g}), "
            f"({y0:.4g}, {y1:.4g})) is exp({res.tail:.3g}) of its maximum, above exp("
            f"{edge_tol:g}): the mass outside the box is not counted, so log Z = {res.log_z:.6g} "
            "is too small. Raise max_doublings, or pass an extent= that holds the mass",
            RuntimeWarning,
        )
    if res.error <= _GRID_ERROR_WARNING:  # NaN warns
        return
    h = max(x1 - x0, y1 - y0) / (res.n_points - 1)
    warn_user(
        f"grid_log_partition: the error estimate |log Z_h - log Z_2h| = {res.error:.3g} nats "
        f"exceeds {_GRID_ERROR_WARNING:g} on the box (({x0:.4g}, {x1:.4g}), ({y0:.4g}, "
        f"{y1:.4g})) with {res.n_points} points per axis (spacing {h:.3g}): the grid does not "
        f"resolve exp(-E), so log Z = {res.log_z:.6g} (and an NLL from it) is unreliable. "
        "Raise n_points; for a heavy-tailed energy (a box grown wide around a narrow peak) "
        "pass a larger log_tol (e.g. -20: a smaller box, leaving out mass of the order of "
        "the result's tail) or an extent= fitted to the mass (max_doublings only bounds "
        "how far the box grows)",
        RuntimeWarning,
    )


def _trapezoid_log(logp: torch.Tensor, hx: float, hy: float) -> float:
    """``log`` of the 2-D trapezoidal rule of ``exp(logp)`` (weights 1/2 on edges)."""
    wx = torch.ones(logp.shape[0], dtype=logp.dtype)
    wy = torch.ones(logp.shape[1], dtype=logp.dtype)
    wx[[0, -1]] = 0.5
    wy[[0, -1]] = 0.5
    logw = (wx[:, None] * wy[None, :]).log()
    return float(torch.logsumexp((logp + logw).reshape(-1), 0)) + math.log(hx * hy)


@dataclass(frozen=True)
class GridNLL:
    """Negative log-likelihood of data under a 2-D energy model (from `grid_nll`).

    Attributes:
        nll: Mean of $E(x_i) + \\log Z$ over the data (nats, a float).
        standard_error: Standard error of that mean over the data points.
        log_z: The `GridLogPartition` used.
    """

    nll: float
    standard_error: float
    log_z: GridLogPartition


@_outside_autocast
def grid_nll(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    log_partition: GridLogPartition | None = None,
    **grid_kwargs: Any,
) -> GridNLL:
    r"""Mean negative log-likelihood $\frac1N\sum_i E(x_i) + \log Z$ of 2-D data.

    Args:
        model: Energy ``E: (B, 2) -> (B,)``.
        x: Data ``(N, 2)``, finite.
        log_partition: A precomputed `grid_log_partition` result (computed if ``None``).
        **grid_kwargs: Forwarded to `grid_log_partition`.

    Returns:
        A `GridNLL` (its ``log_z.error`` bounds the quadrature part of the error; the
        sampling part is ``standard_error``).

    Warns:
        RuntimeWarning: when it computes $\log Z$ and the estimate of its error exceeds
            $10^{-2}$ nats (see `grid_log_partition`; a precomputed ``log_partition`` warned
            when it was computed), and when data points have $-E$ more than 1 nat above the
            grid's highest value (a mode narrower than the grid's spacing, whose mass
            $\log Z$ misses; the error estimate cannot see it).

    Example:
        >>> import math
        >>> from torchebm.core import GaussianModel
        >>> m = GaussianModel(torch.zeros(2), torch.eye(2), dtype=torch.float64)
        >>> r = grid_nll(m, torch.zeros(3, 2, dtype=torch.float64))
        >>> round(r.nll, 6) == round(math.log(2 * math.pi), 6)
        True
    """
    check_tensor("x", x, ndim=2, floating=True)
    if x.shape[1] != 2:
        raise ShapeError(f"x must have shape (N, 2), got {tuple(x.shape)}")
    check_finite_tensor("x", x)
    if log_partition is not None and not isinstance(log_partition, GridLogPartition):
        raise TypeError(
            "log_partition must be a GridLogPartition (from grid_log_partition) or None, got "
            f"{type(log_partition).__name__}"
        )
    lz = log_partition if log_partition is not None else grid_log_partition(model, **grid_kwargs)
    if isinstance(model, torch.nn.Module) or grid_kwargs:  # as the grid's own points
        dtype, device = _model_place(model, grid_kwargs.get("dtype"), grid_kwargs.get("device"))
    else:  # a plain callable (e.g. a lambda fixing a label) scores x as the caller gave it
        dtype, device = x.dtype, x.device
    with torch.no_grad():
        e = model(x.detach().to(device=device, dtype=dtype)).to(torch.float64)
    if e.shape != (x.shape[0],):
        raise ShapeError(f"model must map (N, 2) data to energies (N,), got {tuple(e.shape)}")
    check_finite_tensor("model(x)", e)
    (x0, x1), (y0, y1) = lz.extent
    xd = x.detach().to("cpu", torch.float64)
    outside = int(((xd[:, 0] < x0) | (xd[:, 0] > x1) | (xd[:, 1] < y0) | (xd[:, 1] > y1)).sum())
    if outside:
        warn_user(
            f"grid_nll: {outside} of {x.shape[0]} data points lie outside the box "
            f"(({x0:.4g}, {x1:.4g}), ({y0:.4g}, {y1:.4g})) over which log Z was integrated: "
            "the density there is not normalised by it, and the NLL is too small. Pass an "
            "extent= that holds the data (or let grid_log_partition find the box)",
            RuntimeWarning,
        )
    above = int((-e > lz.peak + 1.0).sum())  # a NaN peak (built without it): 0
    if above:
        warn_user(
            f"grid_nll: {above} of {x.shape[0]} data points have -E more than 1 nat above the "
            f"highest -E on the integration grid ({lz.peak:.4g}): they sit in a mode that the "
            "grid stepped over (narrower than its spacing), whose mass log Z does not count, "
            "so the NLL is too small. Raise n_points or pass an extent= around that mode",
            RuntimeWarning,
        )
    se = float(e.std() / math.sqrt(x.shape[0])) if x.shape[0] > 1 else float("nan")
    return GridNLL(nll=float(e.mean()) + lz.log_z, standard_error=se, log_z=lz)
