r"""Log-likelihood of flow and diffusion models by the probability-flow ODE.

A model trained under an interpolant $x_t = \alpha(t)\,x_1 + \sigma(t)\,x_0$ (t = 0 noise,
t = 1 data) defines, through its velocity $v(x, t)$ (or a score / noise prediction
converted to it), the ODE $\dot x = v(x, t)$ that carries the noise law $p_0$ to the model
law $p_1$. Along a solution the log-density obeys the instantaneous change of variables

$$
\frac{d}{dt}\log p_t(x_t) = -\nabla\!\cdot v(x_t, t)
\quad\Longrightarrow\quad
\log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\!\cdot v(x_t, t)\,dt ,
$$

integrated backwards from the data point $x_1$ to $t = 0$ jointly with $x_t$.
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from torchebm.core import BaseInterpolant, BaseRungeKuttaIntegrator
from torchebm.core.errors import (
    ConfigurationError,
    NonFiniteError,
    ShapeError,
    check_finite_tensor,
    check_generator,
    check_in,
    check_int,
    check_probability,
    check_tensor,
)
from torchebm.flows._utils import FIELD_CALL, explain_model_error
from torchebm.integrators import resolve_integrator
from torchebm.integrators._base_runge_kutta import _check_tolerances, _monotone_grid
from torchebm.integrators._checked import checked_inputs
from torchebm.integrators._state import autograd_grad, autograd_ready
from torchebm.interpolants import resolve_interpolant

__all__ = [
    "ODELikelihood",
    "probability_flow_log_likelihood",
    "bits_per_dim",
    "PREDICTIONS",
    "DIVERGENCES",
]

PREDICTIONS = ("velocity", "score", "noise")
DIVERGENCES = ("exact", "hutchinson")
_PROBES = ("rademacher", "gaussian")
_DEFAULT_TOL = 1e-5  # atol = rtol of Song et al. (2021) for likelihoods


@dataclass(frozen=True)
class ODELikelihood:
    r"""Result of `probability_flow_log_likelihood`.

    Attributes:
        log_likelihood: $\log p_{t_1}(x)$ per sample ``(B,)`` (nats).
        bits_per_dim: $-\log p / (D \ln 2)$ plus the dequantisation offset (see
            `bits_per_dim`) per sample ``(B,)``.
        prior_log_prob: $\log p_{t_0}(x_{t_0})$ of the end points ``(B,)``.
        delta_log_det: $-\int_{t_0}^{t_1} \nabla\cdot v\,dt$ per sample ``(B,)``.
        noise: The end points $x_{t_0}$ ``(B, *event_shape)``.
        nfe: Number of evaluations of the augmented field (each is one model call plus
            its divergence).
    """

    log_likelihood: torch.Tensor
    bits_per_dim: torch.Tensor
    prior_log_prob: torch.Tensor
    delta_log_det: torch.Tensor
    noise: torch.Tensor
    nfe: int


def bits_per_dim(
    log_likelihood: torch.Tensor,
    n_dims: int,
    *,
    n_bins: int | None = None,
    data_range: tuple[float, float] = (-1.0, 1.0),
) -> torch.Tensor:
    r"""Bits per dimension of a continuous log-likelihood, with the dequantisation offset.

    For images with ``n_bins`` intensity levels mapped affinely onto ``data_range``
    $= [a, b]$ and uniformly dequantised (add $u \sim \mathcal U[0, (b-a)/n)$ to each
    pixel), the continuous density on $[a, b]^D$ converts to the density of
    the dequantised integers $[0, n)^D$ by the Jacobian $((b - a)/n)^D$, so

    $$
    \text{bpd} = -\frac{\log p(x)}{D \ln 2} + \log_2\frac{n}{b - a}
    $$

    (the usual $+8$ for data in $[0, 1]$ with 256 levels, $+7$ for $[-1, 1]$). With
    ``n_bins=None`` no offset is added (bits per dimension of the continuous density).
    This is a lower bound in expectation over $u$ of the discrete log-likelihood, i.e. an
    upper bound on the discrete bpd.

    Args:
        log_likelihood: Log-likelihoods (nats), a tensor of any shape (or a number); NaN is
            rejected, $-\infty$ (zero density) gives $+\infty$ bits.
        n_dims: $D$, the number of dimensions per sample (>= 1).
        n_bins: Number of intensity levels (e.g. 256), or ``None``.
        data_range: The interval ``(a, b)`` the levels were scaled to (finite, ``a < b``).

    Returns:
        Bits per dimension, shaped like ``log_likelihood``.

    Raises:
        TypeError: ``log_likelihood`` is not a real (not bool, not complex) tensor or a
            number; ``data_range`` is not a pair of numbers.
        ConfigurationError: ``n_dims < 1``, ``n_bins < 2``, ``data_range`` not finite with
            ``a < b``.
        NonFiniteError: ``log_likelihood`` holds NaN.

    Example:
        >>> float(bits_per_dim(torch.tensor(0.0), 10, n_bins=256, data_range=(0.0, 1.0)))
        8.0
    """
    d = check_int("n_dims", n_dims, minimum=1)
    offset = _dequantisation_offset(n_bins, data_range)
    ll = log_likelihood
    # a bool tensor failed in `-ll`, a complex one gave complex bits
    real = isinstance(ll, torch.Tensor) and not (ll.dtype == torch.bool or ll.is_complex())
    if not real and (isinstance(ll, (bool, torch.Tensor)) or not isinstance(ll, numbers.Real)):
        kind = f" of dtype {ll.dtype}" if isinstance(ll, torch.Tensor) else ""
        raise TypeError(
            f"log_likelihood must be a real tensor of log-likelihoods (nats) or a number, got "
            f"{type(ll).__name__}{kind}"
        )
    nan = torch.isnan(torch.as_tensor(ll)).flatten()
    if bool(nan.any()):
        idx = torch.nonzero(nan).flatten()[:8].tolist()
        raise NonFiniteError(f"log_likelihood holds NaN at flat indices {idx}", indices=idx)
    bpd = -ll / (d * math.log(2.0))
    return bpd if n_bins is None else bpd + offset


def _dequantisation_offset(n_bins: Any, data_range: Any) -> float:
    r"""$\log_2(n / (b - a))$ (0 without ``n_bins``), ``n_bins`` and ``data_range`` checked."""
    if n_bins is None:
        return 0.0
    n = check_int("n_bins", n_bins, minimum=2)
    try:
        if isinstance(data_range, str):
            raise TypeError
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise TypeError(
            f"data_range must be a pair (a, b) of numbers, got {data_range!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ConfigurationError(f"data_range must be (a, b) with finite a < b, got {data_range!r}")
    return math.log2(n / (hi - lo))


def _to_velocity(
    model: Callable, interp: BaseInterpolant, prediction: str, conditioning: dict
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(x, t) -> v(x, t)`` from the model's prediction, by the interpolant's conversions."""

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = model(x, t, **conditioning) if conditioning else model(x, t)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigurationError(
                f"model(x, t) must return a tensor of shape {tuple(x.shape)}, got {got}"
            )
        if prediction == "velocity":
            return out
        if prediction == "score":
            return interp.score_to_velocity(out, x, t)
        return interp.noise_to_velocity(out, x, t)

    return field


def _divergence(
    field: Callable, x: torch.Tensor, t: torch.Tensor, probe: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(v, div v)``: exact (one backward pass per dimension) or Hutchinson $\epsilon^\top J\epsilon$."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        v = field(xg, t)
        if not v.requires_grad:  # no graph: a field constant in x, or autograd switched off
            _check_constant(field, x, t, v)
            return v.detach(), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        # a field with parameters need not depend on x: its Jacobian is then 0, not an error
        if probe is not None:
            (vjp,) = autograd_grad(v, xg, probe, allow_unused=True, materialize_grads=True)
            return v.detach(), (vjp * probe).reshape(x.shape[0], -1).sum(1)
        vf = v if v.ndim == 2 else v.reshape(x.shape[0], -1)
        div: torch.Tensor | None = None  # the first column starts the sum (no zeros + ...)
        for i in range(vf.shape[1]):
            (g,) = autograd_grad(
                vf[:, i].sum(),
                xg,
                retain_graph=i + 1 < vf.shape[1],
                allow_unused=True,
                materialize_grads=True,
            )
            col = (g if g.ndim == 2 else g.reshape(x.shape[0], -1))[:, i]
            div = col if div is None else div + col
    if div is None:  # an empty event
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    return v.detach(), div


def _check_constant(field: Callable, x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> None:
    """A field output without an autograd graph has divergence 0 only if the field is constant
    in x: it is evaluated again at ``x + 1`` (one more evaluation and a host read, in this
    branch only), and a different value means that the model ran without autograd (under
    `torch.no_grad()`, or detaching its output), which would give a silent divergence of 0."""
    if torch.equal(field(x + 1.0, t), v):
        return
    raise ConfigurationError(
        "model(x, t) returned a tensor that depends on x but has no autograd graph "
        "(requires_grad=False): the divergence needs its derivative in x. Do not run the "
        "model under torch.no_grad() or detach its output (probability_flow_log_likelihood "
        "enables gradients itself, also under torch.inference_mode())"
    )


def _standard_prior(interp: BaseInterpolant, t0: float) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""$\log \mathcal N(x; 0, \sigma(t_0)^2 I)$: the law at $t_0$ when the data term is negligible."""

    def log_prob(z: torch.Tensor) -> torch.Tensor:
        tt = torch.full((1,), t0, dtype=z.dtype, device=z.device)
        s = float(interp.compute_sigma_t(tt)[0])
        d = z[0].numel()
        sq = z.reshape(z.shape[0], -1).square().sum(1)
        return -0.5 * sq / s**2 - d * math.log(s) - 0.5 * d * math.log(2 * math.pi)

    return log_prob


def probability_flow_log_likelihood(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    *,
    interpolant: Any = "linear",
    prediction: str | enum.Enum = "velocity",
    integrator: Any = "dopri5",
    n_steps: int | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    divergence: str = "exact",
    probe: str = "rademacher",
    t_noise: float = 0.0,
    t_data: float = 1.0,
    prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    n_bins: int | None = None,
    data_range: tuple[float, float] = (-1.0, 1.0),
    model_kwargs: dict | None = None,
    generator: torch.Generator | None = None,
) -> ODELikelihood:
    r"""Log-likelihood $\log p_{t_1}(x)$ of a flow / diffusion model by its probability-flow ODE.

    The model's output is turned into the velocity $v(x, t)$ with the interpolant's own
    conversions (``"score"``: `score_to_velocity`, ``"noise"``: `noise_to_velocity`); the
    augmented state $(x_t, \ell_t)$ with $\dot\ell = \nabla\cdot v(x_t, t)$, $\ell_{t_1} = 0$
    is integrated from $t_1$ = ``t_data`` down to $t_0$ = ``t_noise`` and

    $$
    \log p_{t_1}(x) = \log p_{t_0}(x_{t_0}) + \ell_{t_0}
    = \log p_{t_0}(x_{t_0}) - \int_{t_0}^{t_1}\nabla\cdot v(x_t, t)\,dt .
    $$

    Divergence: ``"exact"`` takes $D$ backward passes per evaluation (small $D$);
    ``"hutchinson"`` uses $\nabla\cdot v \approx \epsilon^\top (\partial v/\partial x)\,
    \epsilon$ with one probe $\epsilon$ per sample, fixed along the path (Rademacher or
    Gaussian, $\mathbb E\,\epsilon\epsilon^\top = I$), so the returned log-likelihood is an
    unbiased estimate with one vector-Jacobian product per evaluation (FFJORD).

    The prior defaults to $\mathcal N(0, \sigma(t_0)^2 I)$, the law at $t_0$ when
    $\alpha(t_0)$ is 0 or negligible (linear / cosine: exact at $t_0 = 0$; at $t_0 > 0$ it
    leaves out $\alpha(t_0) x_1$, e.g. 0.009 nats at $t_0 = 10^{-3}$ for data of scale 2;
    VP: $\alpha(0) \approx 0.0066$; VE: $\sigma_{max} \gg$ the data scale); pass ``prior``
    for anything else. Score and noise conversions divide by $\alpha$ or $\sigma$ at the ends
    of some paths (linear: $\dot\alpha / \alpha$ at $t = 0$, $\sigma = 0$ at $t = 1$): a
    score/noise prediction with $\alpha(t_0) = 0$ is refused (the velocity there is not
    determined by the score: the result would depend on a numerical floor); use e.g.
    ``t_noise=1e-3``, ``t_data=1 - 1e-3`` (the result is then the density of the data at
    $t_1$).

    Precision: the solver's state and the integral of the divergence are float32 at least;
    a float16/bfloat16 model is evaluated at ``x``'s dtype, and the result (``noise`` and the
    log-densities) comes back in float32 for such an ``x``. An ambient autocast is left on
    (the model runs in half precision, as asked): the divergence inherits its rounding
    (bfloat16, ``D = 16``, RK4: up to 0.14 nats per sample against 2e-5 in float32).

    The divergence needs autograd: it is enabled inside, also when the call runs under
    ``torch.no_grad()`` or ``torch.inference_mode()`` (the solve then runs outside inference
    mode, on a copy of ``x``).

    Args:
        model: ``model(x, t, **model_kwargs)`` with ``t`` of shape ``(B,)``, returning a
            tensor shaped like ``x``.
        x: Data ``(B, *event_shape)`` (floating, finite). For images pass dequantised data
            (see `bits_per_dim`).
        interpolant: A `BaseInterpolant` or a registry name (``"linear"``, ``"cosine"``,
            ``"vp"``, ``"ve"``, ``"edm"``).
        prediction: ``"velocity"``, ``"score"`` or ``"noise"`` (the model's target), or a
            `torchebm.samplers.PredictionType`.
        integrator: A Runge-Kutta integrator of `torchebm.integrators` or its name
            (adaptive ones: ``"dopri5"``, ``"dopri8"``, ``"bosh3"``, ``"adaptive_heun"``;
            fixed: ``"euler"``, ``"heun"``, ``"midpoint"``, ``"rk4"``, ...).
        n_steps: Steps of a fixed-step integrator (required for those; ignored by adaptive
            ones).
        atol: Absolute tolerance of an adaptive integrator (default ``1e-5`` for a name, as
            Song et al. 2021; an instance keeps its own unless given, and is then copied with
            all its other settings: the caller's instance is not changed).
        rtol: Relative tolerance of an adaptive integrator (same default).
        divergence: ``"exact"`` or ``"hutchinson"``.
        probe: Hutchinson probe: ``"rademacher"`` or ``"gaussian"``.
        t_noise: $t_0$, the noise end, in ``[0, t_data)``.
        t_data: $t_1$, the data end, in ``(t_noise, 1]``.
        prior: ``log p_{t_0}(z) -> (B,)`` (default: the Gaussian above).
        n_bins: Intensity levels for the dequantisation offset of ``bits_per_dim`` (default:
            256 when ``x`` has 4 or more dimensions, as images ``(B, C, H, W)`` do; else none).
        data_range: The interval the levels were scaled to (default ``(-1, 1)``).
        model_kwargs: Conditioning passed to the model.
        generator: Randomness of the Hutchinson probes.

    Returns:
        An `ODELikelihood` (its tensors carry no gradient: an evaluation, not a training
        objective; maximum-likelihood training through the ODE needs an adjoint solver).

    Raises:
        TypeError: ``model`` or ``prior`` not callable, ``x`` not a floating tensor,
            ``model_kwargs`` not a dict, ``generator`` not a ``torch.Generator``, an
            integrator of another family.
        ShapeError: ``x`` not ``(B, *event_shape)`` with ``B >= 1``; ``prior`` not returning
            ``(B,)``.
        ConfigurationError: unknown names, a bad time window (also ``t_noise`` where
            $\alpha = 0$ for a score/noise prediction), no ``n_steps`` for a fixed
            integrator, a model output of the wrong shape, bad ``n_bins``/``data_range``
            (checked before the solve); a model output that depends on ``x`` without an
            autograd graph (a model running under ``torch.no_grad()`` or detaching it: its
            divergence cannot be computed; an output constant in ``x`` has divergence 0).
        NonFiniteError: NaN/inf in ``x`` or in the result.

    Example:
        >>> import torch
        >>> field = lambda x, t: x * 0.0  # v = 0: p_1 = p_0 = N(0, I)
        >>> r = probability_flow_log_likelihood(field, torch.zeros(3, 2))
        >>> [round(v, 4) for v in r.log_likelihood.tolist()]
        [-1.8379, -1.8379, -1.8379]

    References:
        Chen, Rubanova, Bettencourt & Duvenaud, "Neural Ordinary Differential Equations",
        NeurIPS 2018.
        Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud, "FFJORD: Free-form Continuous
        Dynamics for Scalable Reversible Generative Models", ICLR 2019.
        Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole, "Score-Based Generative Modeling
        through Stochastic Differential Equations", ICLR 2021 (Appendix D.2).
        Hutchinson, "A stochastic estimator of the trace of the influence matrix for
        Laplacian smoothing splines", Communications in Statistics 18(3), 1989.
    """
    _check_callables(model, prior, model_kwargs)
    check_tensor("x", x, min_ndim=2, floating=True)
    check_finite_tensor("x", x)
    if isinstance(prediction, enum.Enum):  # torchebm.samplers.PredictionType, as FlowSampler
        prediction = prediction.name.lower()
    check_in("prediction", prediction, PREDICTIONS)
    check_in("divergence", divergence, DIVERGENCES)
    check_in("probe", probe, _PROBES)
    check_generator(generator, x.device)
    t0, t1 = _check_window(t_noise, t_data)
    bins = n_bins if n_bins is not None or x.ndim < 4 else 256
    _dequantisation_offset(bins, data_range)  # checked before the solve, not after
    interp = resolve_interpolant(interpolant, owner="probability_flow_log_likelihood")
    _check_noise_end(interp, prediction, t0)
    solver = _resolve_solver(integrator, atol, rtol, n_steps)
    conditioning = dict(model_kwargs or {})
    field = _to_velocity(model, interp, prediction, conditioning)
    # `enable_grad` does not lift inference mode: the divergence's autograd runs outside it,
    # on a normal copy of an inference tensor (which autograd cannot record)
    with torch.inference_mode(False):
        xs = autograd_ready(x).detach()
        eps = _probe(xs, probe, generator) if divergence == "hutchinson" else None
        try:
            z, ell, nfe = _solve(solver, field, xs, eps, t0, t1, n_steps)
        except TypeError as err:  # names a model refusing model(x, t, **model_kwargs)
            explain_model_error(
                "probability_flow_log_likelihood", model, err, FIELD_CALL, conditioning
            )
            raise
    log_prior = (prior or _standard_prior(interp, t0))(z)
    if not isinstance(log_prior, torch.Tensor) or log_prior.shape != ell.shape:
        got = tuple(log_prior.shape) if isinstance(log_prior, torch.Tensor) else log_prior
        raise ShapeError(f"prior(z) must return a tensor of shape {tuple(ell.shape)}, got {got!r}")
    log_prior = log_prior.detach()  # a learnable prior: an evaluation still (docstring)
    check_finite_tensor("log_likelihood", log_prior + ell)
    ll = log_prior + ell
    bpd = bits_per_dim(ll, x[0].numel(), n_bins=bins, data_range=data_range)
    return ODELikelihood(ll, bpd, log_prior, ell, z, nfe)


def _check_callables(model: Any, prior: Any, model_kwargs: Any) -> None:
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t), got {type(model).__name__}")
    if prior is not None and not callable(prior):
        raise TypeError(f"prior must be None or callable as prior(z) -> (B,), got {prior!r}")
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise TypeError(f"model_kwargs must be a dict or None, got {type(model_kwargs).__name__}")


def _check_window(t_noise: Any, t_data: Any) -> tuple[float, float]:
    t_noise, t_data = check_probability("t_noise", t_noise), check_probability("t_data", t_data)
    if not 0.0 <= t_noise < t_data <= 1.0:
        raise ConfigurationError(
            f"need 0 <= t_noise < t_data <= 1, got t_noise={t_noise}, t_data={t_data}"
        )
    return float(t_noise), float(t_data)


def _check_noise_end(interp: BaseInterpolant, prediction: str, t0: float) -> None:
    """A score/noise prediction needs $\alpha(t_0) > 0$: its conversion to a velocity divides
    by $\alpha$ (read off the path's coefficient, float64 on the CPU)."""
    if prediction == "velocity":
        return
    alpha = float(interp.compute_alpha_t(torch.tensor([t0], dtype=torch.float64))[0].reshape(-1)[0])
    if alpha == 0.0:
        raise ConfigurationError(
            f"t_noise={t0} with prediction={prediction!r}: the {prediction} -> velocity "
            f"conversion divides by alpha(t_noise) = 0 on {type(interp).__name__} (the score "
            "does not determine the velocity there, so the result would depend on a numerical "
            "floor); pass t_noise > 0, e.g. t_noise=1e-3"
        )


def _resolve_solver(integrator: Any, atol, rtol, n_steps) -> Any:
    solver: Any = resolve_integrator(
        integrator,
        default="dopri5",
        family=BaseRungeKuttaIntegrator,
        owner="probability_flow_log_likelihood",
    )
    if n_steps is not None:  # checked also where the integrator ignores it (was: silently)
        check_int("n_steps", n_steps, minimum=1)
    if atol is not None or rtol is not None:  # the adaptive integrators' own rule
        _check_tolerances(1.0 if atol is None else atol, 1.0 if rtol is None else rtol)
    if solver.adaptive:
        if isinstance(integrator, str) or integrator is None:  # a name: the defaults here
            atol = _DEFAULT_TOL if atol is None else atol
            rtol = _DEFAULT_TOL if rtol is None else rtol
        if atol is not None or rtol is not None:
            # a private copy with every other setting: the caller's integrator is unchanged
            solver = solver._with_tolerances(atol, rtol)
    elif n_steps is None:
        raise ConfigurationError(
            f"n_steps is required with the fixed-step integrator {type(solver).__name__}"
        )
    return solver


def _probe(x: torch.Tensor, kind: str, generator: torch.Generator | None) -> torch.Tensor:
    e = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return torch.where(e >= 0, 1.0, -1.0).to(x.dtype) if kind == "rademacher" else e


def _solve(solver, field, x, eps, t0: float, t1: float, n_steps) -> tuple:
    """Integrate the augmented state ``[x, ell]`` from ``t1`` down to ``t0``, in float32 at
    least: the model sees ``x``'s dtype, the solver and the integral of the divergence do
    not (a float16 state stalled dopri5, bfloat16 was 19 nats off at a data scale of 1e3)."""
    b, shape, low = x.shape[0], x.shape, x.dtype
    d, wide = x[0].numel(), torch.promote_types(x.dtype, torch.float32)

    def drift(state: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        xs = state[:, :d].reshape(shape).to(low)
        v, div = _divergence(field, xs, t.to(low), eps)
        return torch.cat([v.reshape(b, d), div[:, None]], dim=1).to(wide)

    state = torch.cat([x.reshape(b, d), x.new_zeros(b, 1)], dim=1).to(wide)
    if solver.adaptive:
        grid, steps = torch.tensor([t1, t0], dtype=wide, device=x.device), {}
    else:
        grid = torch.linspace(t1, t0, n_steps + 1, dtype=wide, device=x.device)
        steps = {"n_steps": n_steps}
    _monotone_grid(grid)  # here: integrate skips it under checked_inputs (a window < 1 ulp)
    with checked_inputs():  # x was checked on entry; the field sees the grid's times only
        out = solver.integrate({"x": state}, drift=drift, t=grid, **steps)["x"]
    return out[:, :d].reshape(shape), out[:, d], int(getattr(solver, "nfe", 0))
