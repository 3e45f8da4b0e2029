r"""Score matching: exact / Hutchinson / finite-difference (Hyvärinen), sliced, denoising."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchebm.core import BaseScheduler, warn_once
from torchebm.core._module import forward_kwargs
from torchebm.core.errors import ConfigurationError, ShapeError, check_in, check_int, check_positive
from torchebm.flows._utils import conditioning_rows
from torchebm.integrators._compat_089 import OMIT, Hooks089, accept_089_pickle
from torchebm.integrators._state import autograd_grad
from torchebm.losses._base_score_matching import (
    BaseScoreMatching,
    _flat,
    row_sums,
    squared_norms,
    widened,
)
from torchebm.losses._positional_089 import check_hutchinson_samples, check_variance_reduction

__all__ = ["ScoreMatching", "SlicedScoreMatching", "DenoisingScoreMatching"]

_PROJECTIONS = ("rademacher", "gaussian", "sphere")


def _probes(
    kind: str, shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    r"""Random probe vectors $v$ with $\mathbb E[v v^\top] = I$ over the flattened event.

    ``shape`` is ``(n, *event)``; ``"rademacher"``: entries $\pm 1$; ``"gaussian"``:
    $\mathcal N(0, I)$; ``"sphere"``: uniform on the sphere of radius $\sqrt D$.
    """
    if kind == "rademacher":
        r = torch.randint(0, 2, shape, generator=generator, device=like.device)
        return r.to(like.dtype).mul_(2).sub_(1)
    v = torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
    if kind == "sphere":
        flat = _flat(v)
        v = (flat * (flat.shape[1] ** 0.5) / flat.norm(dim=1, keepdim=True)).reshape(shape)
    return v


def _grad_or_zeros(out: torch.Tensor, x: torch.Tensor, owner: str, model: Any) -> torch.Tensor:
    """``d out.sum() / dx`` with the graph kept; zeros when ``out`` does not depend on ``x``
    (a piecewise-linear energy: ``clamp``, ``where``, masks leave no path back to ``x``).

    Not for a ``torch.compile``'d model: its backward (AOTAutograd: the default Inductor and
    ``"aot_eager"`` backends) cannot be differentiated again, and where no parameter requires
    grad (an EMA copy, a frozen or parameter-free model) torch returns no second derivative
    instead of raising, so the Hessian term would silently be 0. A ``torch.compile`` wrapper
    in ``model`` is refused here; a module compiled in place (``Module.compile()``) leaves no
    public mark to refuse it by (documented in `BaseScoreMatching`).
    """
    if out.requires_grad:
        (g,) = autograd_grad(out.sum(), x, create_graph=True, allow_unused=True)
        if g is not None:
            return g
    if isinstance(model, nn.Module) and any(
        isinstance(getattr(m, "_orig_mod", None), nn.Module) for m in model.modules()
    ):
        raise ConfigurationError(
            f"{owner} needs second derivatives of the model in x, but model "
            f"({type(model).__name__}) holds a torch.compile'd module, whose backward torch "
            "cannot differentiate (the Hessian term would be 0): pass the uncompiled module "
            "or torch.compile(model, backend='eager')"
        )
    return torch.zeros_like(x)


class ScoreMatching(Hooks089, BaseScoreMatching):
    r"""Hyvärinen score matching with an exact or stochastic Hessian trace.

    With the model score $s_\theta = -\nabla_x E_\theta$, the (implicit) score
    matching objective is

    $$
    J(\theta) = \mathbb E_{x\sim p}\Bigl[\tfrac12\lVert\nabla_x E_\theta(x)\rVert^2
    - \operatorname{tr}\nabla_x^2 E_\theta(x)\Bigr],
    $$

    equal (up to a constant) to $\tfrac12\mathbb E\lVert s_\theta - \nabla\log p\rVert^2$.
    The trace is computed by ``hessian_method``:

    * ``"exact"``: $D$ second-order backward passes ($D$ = flattened event
      size); exact, for small $D$;
    * ``"hutchinson"``: $\frac1M\sum_m v_m^\top \nabla_x^2 E\, v_m$ with
      ``hutchinson_samples`` $M$ Rademacher probes (Hessian-vector products by
      double backward); unbiased;
    * ``"approx"``: the same probes with central finite differences of the gradient,
      $v^\top(\nabla E(x+\epsilon v) - \nabla E(x-\epsilon v))/(2\epsilon)$
      (``fd_epsilon``); no double backward in $x$, bias $O(\epsilon^2)$. The differences
      need gradients precise well below $\epsilon\,\lVert\nabla^2 E\rVert$: under
      float16/bfloat16 autocast (about 3 digits) the default step leaves about none of
      them (parameter gradients 17-20 % off for ``MLPEnergy(4)`` on 256 points); use
      ``"hutchinson"`` there, or a step near the data's scale.

    The keyword-only options ``nan_policy``, ``cfg_dropout``, ``null_condition``,
    ``check_conditioning``, ``dtype`` and ``device`` are those of every loss: see
    [`BaseLoss`][torchebm.core.BaseLoss].

    Args:
        model: Energy model ``(B, *event) -> (B,)``.
        hessian_method: ``"exact"``, ``"hutchinson"`` or ``"approx"``.
        hutchinson_samples: Probes $M$ per sample for the stochastic methods (default 1;
            an error with ``"exact"``, which draws none).
        fd_epsilon: Finite-difference step of ``"approx"`` (absolute: choose it relative to
            the data's scale; the quotient divides by the step as rounded at ``x``, and a
            step that rounds to 0 raises `ConfigurationError`).
        regularization_strength: Weight $\lambda$ of the regulariser (float or
            scheduler).
        custom_regularization: Callable ``(x, model) -> scalar`` replacing the default
            squared-gradient regulariser.
        use_autograd: ``False`` computes $\nabla_x E$ with ``torch.func``.
        functional_model: Module used by the ``torch.func`` path instead of ``model``.
        noise_scale: Noise standard deviation kept for [`perturb_data`][torchebm.losses.BaseScoreMatching.perturb_data].

    Raises:
        ValueError: unknown ``hessian_method`` or non-positive counts/steps.

    Example:
        >>> from torchebm.models import MLPEnergy  # torchebm-models
        >>> model = MLPEnergy(2)
        >>> sm = ScoreMatching(model, hessian_method="hutchinson", hutchinson_samples=5)
        >>> loss = sm(torch.randn(64, 2)); loss.backward()

    References:
        - Hyvärinen, "Estimation of non-normalized statistical models by score matching",
          JMLR 2005.
        - Hutchinson, "A stochastic estimator of the trace of the influence matrix for
          Laplacian smoothing splines", 1989.
    """

    @property
    def second_order_in_x(self) -> bool:
        """Exact and Hutchinson traces differentiate the gradient again; ``"approx"`` (finite
        differences of the gradient) does not."""
        return self.hessian_method != "approx"

    # 0.8.9 kept its base's hutchinson_samples = 1, which it never used: not passed back
    __setstate__ = accept_089_pickle("conditioning", lambda old: {"hutchinson_samples": OMIT})

    _retired_hooks = dict.fromkeys(
        ("_exact_score_matching", "_approx_score_matching"),
        "override `hessian_trace` (the trace term) or `compute_loss`",
    )

    def __init__(
        self,
        model: Any,
        hessian_method: str = "exact",
        hutchinson_samples: int | None = None,
        fd_epsilon: float = 1e-3,
        regularization_strength: Any = 0.0,
        custom_regularization: Callable | None = None,
        use_autograd: bool = True,
        functional_model: nn.Module | None = None,
        noise_scale: Any = 0.01,
        *,
        nan_policy: str = "raise",
        cfg_dropout: float = 0.0,
        null_condition: Any = None,
        check_conditioning: bool = True,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        hutchinson_samples = check_hutchinson_samples(hutchinson_samples, hessian_method)
        super().__init__(**forward_kwargs(locals(), super().__init__))
        self.hessian_method = check_in(
            "hessian_method", hessian_method, ("exact", "hutchinson", "approx")
        )
        self.fd_epsilon = check_positive("fd_epsilon", fd_epsilon)

    def extra_repr(self) -> str:
        return f"hessian_method={self.hessian_method!r}"

    def hessian_trace(
        self,
        x: torch.Tensor,
        grad: torch.Tensor,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""$\operatorname{tr}\nabla_x^2 E(x)$ per sample, ``(B,)``, by ``hessian_method``.

        Args:
            x: Leaf input with ``requires_grad`` ``(B, *event)``.
            grad: $\nabla_x E(x)$ computed from ``x`` with ``create_graph=True``.
            model_kwargs: Conditioning of the model (used by ``"approx"``, which evaluates
                the gradient again at perturbed points).
            generator: Source of the Rademacher probes (``"hutchinson"``, ``"approx"``).
        """
        b = x.shape[0]
        owner = f"ScoreMatching(hessian_method={self.hessian_method!r})"
        wide = torch.promote_types(x.dtype, torch.float32)  # sums in at least float32
        if self.hessian_method == "exact":
            g = _flat(grad)
            trace = x.new_zeros(b, dtype=wide)
            for d in range(g.shape[1]):
                trace = trace + _flat(_grad_or_zeros(g[:, d], x, owner, self.model))[:, d]
            return trace
        m = self.hutchinson_samples
        if self.hessian_method == "hutchinson":
            trace = x.new_zeros(b, dtype=wide)
            for _ in range(m):
                v = _probes("rademacher", tuple(x.shape), x, generator)
                hv = _grad_or_zeros((grad * v), x, owner, self.model)
                trace = trace + row_sums(widened(v) * hv)
            return trace / m
        # "approx": central differences of the gradient along Rademacher probes
        eps = self.fd_epsilon
        v = _probes("rademacher", (m * b, *x.shape[1:]), x, generator)
        xr = x.detach().repeat(m, *([1] * (x.ndim - 1)))
        both = torch.cat([xr + eps * v, xr - eps * v])
        # the step as x's rounding made it: 2 eps v only for |x| well below eps / float eps
        # (float32: x + 1e-3 is x + 2e-3 at |x| = 2e4, the trace 7x off; x at 1e5)
        step = both[: m * b] - both[m * b :]
        if not bool(step.ne(0).all()):
            big = float(xr[step == 0].abs().max())
            raise ConfigurationError(
                f"fd_epsilon={eps:g} is below the spacing of {x.dtype} values at |x| = "
                f"{big:.3g} (x + fd_epsilon rounds to x): use a larger fd_epsilon (relative to "
                "the data's scale), float64, or hessian_method='hutchinson'"
            )
        conditioning = _repeat_kwargs(model_kwargs, b, 2 * m)
        g = self.compute_score(both, model_kwargs=conditioning)
        # v_i / (2 eps) = 1 / step_i where exact: the diagonal of H is then exact whatever the
        # rounding, and the off-diagonal terms keep zero mean (|step_i| does not depend on v)
        quad = row_sums((g[: m * b] - g[m * b :]) / step)
        return quad.reshape(m, b).mean(0)

    def compute_loss(
        self,
        x: torch.Tensor,
        *,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mean over the batch of $\\tfrac12\\lVert\\nabla E\\rVert^2 - \\operatorname{tr}\\nabla^2 E$.

        Args:
            x: Data batch `(B, *event)`.
            model_kwargs: Conditioning of the model, or ``None``.
            generator: Source of the random probes of a stochastic trace estimator.
        """
        xg = x.detach().requires_grad_(True)
        with self._exact_layer_norms():  # the trace's parameter gradient is a third derivative
            grad = self.compute_score(xg, model_kwargs=model_kwargs)
        trace = self.hessian_trace(xg, grad, model_kwargs, generator)
        return (0.5 * squared_norms(grad) - trace).mean()  # (in at least float32)


def _repeat_kwargs(model_kwargs: dict | None, batch: int, times: int) -> dict:
    """Per-sample conditioning tiled ``times`` times, as ``x.repeat``: tensors and arrays with
    leading dimension ``batch``, lists of ``batch`` items (prompts), and such values inside
    dicts and tuples (as flows' ``paired_conditioning`` pairs them); the rest is kept.
    ``times == 1`` tiles nothing: the conditioning is returned as it is (a list of ``batch``
    per-sample tensors of leading dimension ``batch``, ambiguous when tiled, then runs)."""
    if not model_kwargs:
        return {}
    if times == 1:
        return model_kwargs
    rows = torch.arange(batch).repeat(times)
    return {k: conditioning_rows(k, v, rows, batch) for k, v in model_kwargs.items()}


class SlicedScoreMatching(Hooks089, BaseScoreMatching):
    r"""Sliced score matching: score matching with random one-dimensional projections.

    With probes $v$ satisfying $\mathbb E[vv^\top] = I$ (over the flattened
    event) and the model score $s_\theta = -\nabla_x E_\theta$,

    $$
    J(\theta) = \mathbb E_{x,v}\Bigl[\tfrac12 (v^\top\nabla_x E_\theta(x))^2
    - v^\top \nabla_x^2 E_\theta(x)\, v\Bigr],
    $$

    an unbiased estimate of Hyvärinen's objective needing one Hessian-vector product per
    projection (computed for all ``n_projections`` at once on a tiled batch). With
    ``variance_reduction=True`` the first term is replaced by its expectation
    $\tfrac12\lVert\nabla_x E_\theta\rVert^2$ (SSM-VR).

    The keyword-only options ``nan_policy``, ``cfg_dropout``, ``null_condition``,
    ``check_conditioning``, ``dtype`` and ``device`` are those of every loss: see
    [`BaseLoss`][torchebm.core.BaseLoss].

    Args:
        model: Energy model ``(B, *event) -> (B,)``.
        n_projections: Probes per sample.
        projection_type: ``"rademacher"``, ``"gaussian"`` or ``"sphere"`` (uniform on the
            sphere of radius $\sqrt D$).
        variance_reduction: Use the SSM-VR form of the first term.
        regularization_strength: Weight $\lambda$ of the regulariser (float or
            scheduler).
        custom_regularization: Callable ``(x, model) -> scalar`` replacing the default
            squared-gradient regulariser.
        use_autograd: ``False`` computes $\nabla_x E$ with ``torch.func``.
        functional_model: Module used by the ``torch.func`` path instead of ``model``.
        noise_scale: Noise standard deviation kept for [`perturb_data`][torchebm.losses.BaseScoreMatching.perturb_data].

    Raises:
        ValueError: unknown ``projection_type`` or ``n_projections < 1``.

    Example:
        >>> from torchebm.models import MLPEnergy  # torchebm-models
        >>> model = MLPEnergy(2)
        >>> ssm = SlicedScoreMatching(model, n_projections=5)
        >>> loss = ssm(torch.randn(64, 2)); loss.backward()

    References:
        - Song, Garg, Shi & Ermon, "Sliced score matching: a scalable approach to density
          and score estimation", UAI 2019.
    """

    @property
    def second_order_in_x(self) -> bool:
        """Always: the projected gradient is differentiated again in ``x``."""
        return True

    _retired_hooks = dict.fromkeys(
        ("_get_random_projections", "_functional_sliced_loss"),
        "choose the projections with `projection_type=`, or override `compute_loss`",
    )

    def __init__(
        self,
        model: Any,
        n_projections: int = 5,
        projection_type: str = "rademacher",
        variance_reduction: bool = False,
        regularization_strength: Any = 0.0,
        custom_regularization: Callable | None = None,
        use_autograd: bool = True,
        functional_model: nn.Module | None = None,
        noise_scale: Any = 0.01,
        *,
        nan_policy: str = "raise",
        cfg_dropout: float = 0.0,
        null_condition: Any = None,
        check_conditioning: bool = True,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        check_variance_reduction(variance_reduction)
        super().__init__(**forward_kwargs(locals(), super().__init__, hutchinson_samples=1))
        self.n_projections = check_int("n_projections", n_projections, minimum=1)
        self.projection_type = check_in("projection_type", projection_type, _PROJECTIONS)
        if not isinstance(variance_reduction, bool):
            raise TypeError(f"variance_reduction must be a bool, got {variance_reduction!r}")
        self.variance_reduction = variance_reduction

    def extra_repr(self) -> str:
        return f"n_projections={self.n_projections}, projection_type={self.projection_type!r}"

    def compute_loss(
        self,
        x: torch.Tensor,
        *,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sliced objective averaged over the batch and the projections.

        Args:
            x: Data batch `(B, *event)`.
            model_kwargs: Conditioning of the model, or ``None``.
            generator: Source of the random projections.
        """
        b, m = x.shape[0], self.n_projections
        xr = x.detach().repeat(m, *([1] * (x.ndim - 1))).requires_grad_(True)
        conditioning = _repeat_kwargs(model_kwargs, b, m)
        v = _probes(self.projection_type, tuple(xr.shape), xr, generator)
        try:
            with self._exact_layer_norms():  # v.H.v's parameter gradient: a third derivative
                g = self.compute_score(xr, model_kwargs=conditioning)
        except ShapeError as err:  # the model saw the tiled batch: name the caller's x too
            raise ShapeError(
                f"{type(self).__name__}: the model rejected x of shape {tuple(x.shape)} "
                f"(evaluated as its {m} projection copies stacked, shape {tuple(xr.shape)}): "
                f"{err}"
            ) from err
        vg = row_sums(widened(v) * g)
        hv = _grad_or_zeros(vg, xr, type(self).__name__, self.model)
        vhv = row_sums(widened(v) * hv)
        first = 0.5 * (squared_norms(g) if self.variance_reduction else vg.square())  # (wide)
        return (first - vhv).mean()


class DenoisingScoreMatching(BaseScoreMatching):
    r"""Denoising score matching with Gaussian corruption.

    With $\tilde x = x + \sigma\xi$, $\xi\sim\mathcal N(0, I)$, the model score
    $s_\theta = -\nabla_x E_\theta$ is regressed on the score of the corruption
    kernel, $\nabla_{\tilde x}\log q(\tilde x\mid x) = -(\tilde x - x)/\sigma^2$:

    $$
    J(\theta) = \tfrac12\,\mathbb E\,\bigl\lVert \nabla_x E_\theta(\tilde x)
    - (\tilde x - x)/\sigma^2 \bigr\rVert^2,
    $$

    minimised by $s_\theta = \nabla\log p_\sigma$, the score of the data convolved
    with $\mathcal N(0,\sigma^2 I)$ (for $\mathcal N(0, s^2)$ data and a
    quadratic energy $\tfrac w2 x^2$: $w = 1/(s^2+\sigma^2)$). This is the
    sign torchebm 0.8.9 used (the reference documentation's version regressed onto
    $-(\tilde x - x)/\sigma^2$ and trained $E \approx +\log p$).

    The keyword-only options ``nan_policy``, ``cfg_dropout``, ``null_condition``,
    ``check_conditioning``, ``dtype`` and ``device`` are those of every loss: see
    [`BaseLoss`][torchebm.core.BaseLoss].

    Args:
        model: Energy model ``(B, *event) -> (B,)``.
        noise_scale: $\sigma > 0$ (float or scheduler; a schedule that reaches 0 raises
            `ConfigurationError` at that step).
        sigma: Deprecated alias of ``noise_scale`` (its earlier name).
        regularization_strength: Weight $\lambda$ of the regulariser (float or
            scheduler).
        custom_regularization: Callable ``(x, model) -> scalar`` replacing the default
            squared-gradient regulariser.
        use_autograd: ``False`` computes $\nabla_x E$ with ``torch.func``.
        functional_model: Module used by the ``torch.func`` path instead of ``model``.

    Example:
        >>> from torchebm.models import MLPEnergy  # torchebm-models
        >>> model = MLPEnergy(2)
        >>> dsm = DenoisingScoreMatching(model, noise_scale=0.1)
        >>> loss = dsm(torch.randn(64, 2)); loss.backward()

    References:
        - Vincent, "A connection between score matching and denoising autoencoders",
          Neural Computation 2011.
    """

    def __init__(
        self,
        model: Any,
        noise_scale: Any = 0.01,
        regularization_strength: Any = 0.0,
        custom_regularization: Callable | None = None,
        use_autograd: bool = True,
        functional_model: nn.Module | None = None,
        *,
        sigma: Any = None,
        nan_policy: str = "raise",
        cfg_dropout: float = 0.0,
        null_condition: Any = None,
        check_conditioning: bool = True,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        if sigma is not None:
            if noise_scale != 0.01:
                raise ConfigurationError(
                    "pass either noise_scale or its deprecated alias sigma, not both"
                )
            warn_once(
                "DenoisingScoreMatching.sigma",
                "DenoisingScoreMatching(sigma=...) is deprecated; use noise_scale=...",
                DeprecationWarning,
            )
            if not isinstance(sigma, BaseScheduler):
                check_positive("sigma", sigma)  # named as the caller wrote it
            noise_scale = sigma
        super().__init__(**forward_kwargs(locals(), super().__init__, hutchinson_samples=1))

    def extra_repr(self) -> str:
        return f"noise_scale={self.noise_scale}"

    @property
    def sigma(self) -> float:
        """Deprecated alias of [`noise_scale`][torchebm.losses.BaseScoreMatching.noise_scale]."""
        return self.noise_scale

    def compute_loss(
        self,
        x: torch.Tensor,
        *,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mean over the batch of $\\tfrac12\\lVert\\nabla E(\\tilde x) - (\\tilde x - x)/\\sigma^2\\rVert^2$.

        Args:
            x: Clean data `(B, *event)`.
            model_kwargs: Conditioning of the model, or ``None``.
            generator: Source of the perturbation noise.
        """
        sigma = self.noise_scale
        if not sigma > 0:  # a schedule may end at 0 (a Langevin noise may; this target may not)
            raise ConfigurationError(
                f"noise_scale must be > 0 in DenoisingScoreMatching (the target noise / sigma^2 "
                f"is 0/0 at 0), but its schedule is at {sigma}; end the schedule above 0"
            )
        x_noisy, noise = self.perturb_data(x, generator)
        grad = self.compute_score(x_noisy.detach(), model_kwargs=model_kwargs)
        # at least float32: noise / sigma^2 is ~1e4 at the default sigma, its square is past
        # float16's largest value (65504) and every float16 batch was inf
        wide = torch.promote_types(grad.dtype, torch.float32)
        target = noise.to(wide) / (sigma * sigma)
        return 0.5 * squared_norms(grad.to(wide) - target).mean()
