r"""`BaseScoreMatching`: energies, their gradients and the regulariser of score matching.

Moved here from `torchebm.core._base_loss` (only the score-matching losses use it);
`from torchebm.core import BaseScoreMatching` keeps working through core's lazy export
when `torchebm-losses` is installed.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import weakref
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchebm.core import BaseLoss, ScheduledParameter, warn_once
from torchebm.core._module import forward_kwargs, warn_user
from torchebm.core.errors import ConfigurationError, ShapeError, check_energies, check_int
from torchebm.flows._utils import (
    check_model_object,
    checked_loss,
    loss_conditioning,
    second_order_ddp,
    twice_differentiable,
    zero_multiple,
)
from torchebm.integrators._compat_089 import ConditioningAttrs089, accept_089_pickle
from torchebm.integrators._state import autograd_grad, autograd_ready, eager_under_compile

__all__ = ["BaseScoreMatching", "layer_norms_from_primitives"]


def _layer_norm_from_primitives(module: nn.LayerNorm, args: tuple, *rest: Any) -> Any:
    """Forward hook (``rest``: ``(kwargs, output)``, or ``(output,)`` when another thread
    removes it mid-call): the module's output recomputed from its input by mean,
    subtraction and ``rsqrt`` (in at least float32, returned in the fused output's dtype),
    so that its mean and scale stay functions of the input at every order of derivative."""
    output, kwargs = rest[-1], (rest[0] if len(rest) == 2 else {})
    if not args and "input" not in kwargs:
        return None  # (the input is out of reach: the fused output stands)
    x = args[0] if args else kwargs["input"]
    dims = tuple(range(-len(module.normalized_shape), 0))
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    centred = xf - xf.mean(dims, keepdim=True)
    y = centred * (centred.square().mean(dims, keepdim=True) + module.eps).rsqrt()
    if module.weight is not None:
        y = y * module.weight
    if module.bias is not None:
        y = y + module.bias
    return y.to(output.dtype)


#: LayerNorm module -> (open blocks rerouting it, its hook's handle), for the whole process:
#: one hook per module however many blocks (nested, in threads or tasks) reroute it
_REROUTED: weakref.WeakKeyDictionary[nn.Module, tuple[int, Any]] = weakref.WeakKeyDictionary()
_REROUTED_LOCK = threading.Lock()


class layer_norms_from_primitives:
    r"""Inside the block the `nn.LayerNorm` modules of ``models`` compute their output from
    primitive ops (a forward hook that runs before any other).

    PyTorch's fused ``layer_norm`` treats its saved mean and $1/\sigma$ as constants when its
    double backward is differentiated: third derivatives come out silently wrong (17-90 %
    for a one-LayerNorm energy; pytorch/pytorch#175754), and the parameter gradient of a
    loss on $\nabla_x^2 E$ is one. Values are unchanged to rounding; the fused forward
    still runs (its output is discarded). Only modules that run ``nn.LayerNorm``'s own
    ``forward`` are rerouted (a subclass with its own, e.g. a channels-first LayerNorm, is
    not), each by one hook while any block holds it (the hook is the module's, so calls
    from other threads meanwhile are rerouted too). Not reached: ``F.layer_norm`` called
    directly, and a forward recomputed after the block (activation checkpointing recomputes
    in ``backward()``: its check then fails with a ``CheckpointError``, where the gradients
    were silently wrong before). Entering and leaving run eagerly under ``torch.compile``
    (whose AOT backends cannot differentiate twice in any case).

    Args:
        *models: Modules (anything else is skipped) whose LayerNorm modules are rerouted.
    """

    def __init__(self, *models: Any):
        self.models = models
        self._entered: list[list[nn.Module]] = []  # one list per open `with` of this object

    def __enter__(self) -> None:
        eager_under_compile(self._reroute)()

    def __exit__(self, *exc: object) -> None:
        eager_under_compile(self._restore)()

    def _reroute(self) -> None:
        layers = {
            id(layer): layer
            for model in self.models
            if isinstance(model, nn.Module)
            for layer in model.modules()
            if isinstance(layer, nn.LayerNorm) and type(layer).forward is nn.LayerNorm.forward
        }
        with _REROUTED_LOCK:
            for layer in layers.values():
                count, handle = _REROUTED.get(layer, (0, None))
                if handle is None:
                    handle = layer.register_forward_hook(
                        _layer_norm_from_primitives, prepend=True, with_kwargs=True
                    )
                _REROUTED[layer] = (count + 1, handle)
        self._entered.append(list(layers.values()))

    def _restore(self) -> None:
        with _REROUTED_LOCK:
            for layer in self._entered.pop():
                count, handle = _REROUTED[layer]
                if count > 1:
                    _REROUTED[layer] = (count - 1, handle)
                else:
                    del _REROUTED[layer]
                    handle.remove()


def _flat(t: torch.Tensor) -> torch.Tensor:
    """``(B, ...) -> (B, D)``; a 2-D tensor is returned as is (no view node in autograd)."""
    return t if t.ndim == 2 else t.reshape(t.shape[0], -1)


def squared_norms(t: torch.Tensor) -> torch.Tensor:
    """``|t_i|^2`` per row ``(B,)``, in at least float32: a float16 score of a few hundred
    per coordinate squares past float16's largest value (65504), and the loss was inf."""
    return row_sums(widened(t).pow(2))


def row_sums(t: torch.Tensor) -> torch.Tensor:
    """Sums per row ``(B,)`` in at least float32 (a Hessian trace of a float16 model fitted at
    a small noise scale is past 65504: 1e4 per coordinate)."""
    return _flat(widened(t)).sum(1)


def widened(t: torch.Tensor) -> torch.Tensor:
    """``t`` in at least float32 (float16/bfloat16 cast up, float64 kept)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _checked_energies(energies: Any, batch: int) -> torch.Tensor:
    """The model's energies ``(B,)``; a ``(B, 1)`` result is squeezed with one
    ``DeprecationWarning`` (torchebm 0.8.9's score matching differentiated its sum, so it
    took one; the samplers and contrastive divergence never did), anything else is a
    `ShapeError`."""
    if isinstance(energies, torch.Tensor) and energies.shape == (batch, 1):
        warn_once(
            "score matching (B, 1) energies",
            f"the model returns energies of shape ({batch}, 1): score matching squeezes them "
            "to (B,) as torchebm 0.8.9 did (deprecated; the samplers and contrastive "
            "divergence need (B,)): return energy.squeeze(-1)",
            DeprecationWarning,
        )
        energies = energies.squeeze(-1)
    return check_energies("the model", energies, batch)


class BaseScoreMatching(ConditioningAttrs089, BaseLoss):
    r"""Base of the score-matching family (exact, Hutchinson, sliced, denoising).

    The model is an energy $E_\theta(x)$; its score is
    $s_\theta(x) = -\nabla_x E_\theta(x)$. ``forward`` validates and casts the batch,
    resolves the conditioning, calls [`compute_loss`][torchebm.losses.BaseScoreMatching.compute_loss] (the one method a subclass
    implements), adds the regulariser and applies the non-finite policy.

    The batch ``x`` is detached: the loss trains the energy's parameters and passes no
    gradient back to ``x`` (the score is a derivative with respect to a fresh leaf copy of
    it), so an encoder that produces ``x`` is not trained through this loss; contrastive
    divergence and the flow-matching objectives do pass gradients to their data.

    The exact/Hutchinson and sliced variants train through second derivatives in ``x``, so
    their parameter gradients are third derivatives of the energy
    ([`second_order_in_x`][torchebm.losses.BaseScoreMatching.second_order_in_x]): in their
    ``forward`` and ``compute_loss`` the model's ``nn.LayerNorm`` modules run from primitive
    ops, since PyTorch's fused kernel gets third derivatives wrong (pytorch/pytorch#175754).
    Not reached: a LayerNorm subclass with its own ``forward``, ``F.layer_norm`` called by
    the model itself, a gradient built by hand with `compute_score` outside these methods,
    and a forward that activation checkpointing recomputes in ``backward()`` (it then
    raises ``CheckpointError``). ``BatchNorm`` raises in PyTorch at third order.
    A model compiled by a backend other than ``"eager"`` has a backward torch cannot
    differentiate again: a ``torch.compile`` wrapper is refused (``ConfigurationError``),
    but one compiled in place (``Module.compile()``) with no parameter requiring grad (a
    frozen copy) gives these losses a Hessian term of 0, silently; compile it with
    ``backend="eager"``. Inside a compiled training step the objective runs eagerly.

    Regularisation: with ``regularization_strength`` $\lambda > 0$ the loss gains
    $\lambda\, R(x)$ where $R$ is ``custom_regularization(x, model)`` when
    given, else the mean squared energy-gradient norm
    $\frac1B\sum_b \lVert\nabla_x E_\theta(x_b)\rVert^2$ on the clean batch.

    The keyword-only options ``nan_policy``, ``cfg_dropout``, ``null_condition``,
    ``check_conditioning``, ``dtype`` and ``device`` are those of every loss: see
    [`BaseLoss`][torchebm.core.BaseLoss].

    Args:
        model: Energy model mapping ``(B, *event)`` to ``(B,)`` (a ``(B, 1)`` result is
            squeezed with one ``DeprecationWarning``, as torchebm 0.8.9 took it).
        noise_scale: Noise standard deviation $\sigma$ (float or scheduler; used by
            the denoising variant and by [`perturb_data`][torchebm.losses.BaseScoreMatching.perturb_data]).
        regularization_strength: $\lambda$ (float or scheduler), ``>= 0``.
        use_autograd: ``True``: $\nabla_x E$ by ``torch.autograd.grad``. ``False``:
            by ``torch.func.grad`` over ``torch.func.functional_call`` of
            ``functional_model`` (or the model) with its current parameters; both give the
            same values and parameter gradients (a ``functional_model`` that holds none of
            ``model``'s trainable parameters takes the gradients itself: warned).
        hutchinson_samples: Number of random probes for stochastic trace estimators.
        custom_regularization: Callable ``(x, model) -> scalar`` replacing the default
            regulariser.
        functional_model: Module used by the functional path instead of ``model``.

    References:
        - Hyvärinen, "Estimation of non-normalized statistical models by score matching",
          JMLR 2005.
    """

    model: Any
    __setstate__ = accept_089_pickle("conditioning")  # losses pickled whole by torchebm 0.8.9

    def __init__(
        self,
        model: Any,
        noise_scale: Any = 0.01,
        regularization_strength: Any = 0.0,
        use_autograd: bool = True,
        hutchinson_samples: int = 1,
        custom_regularization: Callable | None = None,
        functional_model: nn.Module | None = None,
        *,
        nan_policy: str = "raise",
        cfg_dropout: float = 0.0,
        null_condition: Any = None,
        check_conditioning: bool = True,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        super().__init__(**forward_kwargs(locals(), super().__init__))
        if model is None or not callable(model):
            raise TypeError(
                f"{type(self).__name__} requires an energy model (an nn.Module mapping (B, ...) "
                f"to (B,)), got {type(model).__name__}"
            )
        self.model = check_model_object(type(self).__name__, model)
        self._register_param("noise_scale", noise_scale, positive=True)
        self._register_param("regularization_strength", regularization_strength, non_negative=True)
        if not isinstance(use_autograd, bool):
            raise TypeError(f"use_autograd must be a bool, got {use_autograd!r}")
        self.use_autograd = use_autograd
        self.hutchinson_samples = check_int("hutchinson_samples", hutchinson_samples, minimum=1)
        if custom_regularization is not None and not callable(custom_regularization):
            raise TypeError(
                "custom_regularization must be a callable (x, model) -> scalar, got "
                f"{type(custom_regularization).__name__}"
            )
        self.custom_regularization = custom_regularization
        if functional_model is not None and not isinstance(functional_model, nn.Module):
            raise TypeError(
                f"functional_model must be an nn.Module, got {type(functional_model).__name__}"
            )
        if functional_model is not None and use_autograd:  # was ignored without a word
            warn_user(
                f"{type(self).__name__}: functional_model is used only with use_autograd=False; "
                "with use_autograd=True the gradient is taken through model",
                UserWarning,
            )
        elif functional_model is not None and _shares_no_trainable(model, functional_model):
            warn_user(
                f"{type(self).__name__}: functional_model shares no trainable parameter with "
                "model: the functional path differentiates functional_model's own parameters, "
                "so an optimizer over model.parameters() gets no gradient from this loss (pass "
                "a module holding model's parameters, e.g. a wrapper of model)",
                UserWarning,
            )
        # held, not registered: the functional copy (it usually shares parameters with
        # ``model``) must not add its parameters to this loss's parameters() or state_dict()
        self._functional_model = (functional_model,)

    def __repr__(self) -> str:
        extra = self.extra_repr()  # a subclass's own hyper-parameters
        return f"{type(self).__name__}(model={type(self.model).__name__}{extra and ', ' + extra})"

    @property
    def second_order_in_x(self) -> bool:
        """Whether `compute_loss` differentiates the energy gradient again in ``x`` (a Hessian
        trace, a directional derivative), so that its parameter gradient is a third derivative:
        the model's LayerNorm modules then run from primitives during the loss (PyTorch's
        fused kernel is wrong there). ``False`` here; a subclass that does says so."""
        return False

    def _exact_layer_norms(self) -> contextlib.AbstractContextManager:
        """`layer_norms_from_primitives` over the model(s) if `second_order_in_x`, else a null
        context (``forward`` enters it, and the second-order ``compute_loss``, which may be
        called directly)."""
        if not self.second_order_in_x:
            return contextlib.nullcontext()
        return layer_norms_from_primitives(self.model, self.functional_model)

    # schedulable hyper-parameters ------------------------------------------------------------
    @property
    def functional_model(self) -> nn.Module | None:
        """The module the `torch.func` path evaluates instead of `model` (not registered)."""
        return self._functional_model[0]

    noise_scale = ScheduledParameter(positive=True)
    """Current noise standard deviation $\\sigma$."""

    regularization_strength = ScheduledParameter(non_negative=True)
    """Current regularisation weight $\\lambda$."""

    # energies and gradients ------------------------------------------------------------------
    def energy(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        """``model(x, **model_kwargs)`` under autocast, checked to be ``(B,)``.

        Args:
            x: Samples `(B, *event)`.
            model_kwargs: Conditioning keywords, or ``None``.
        """
        with self.autocast_context():
            e = self.model(x, **model_kwargs) if model_kwargs else self.model(x)
        return _checked_energies(e, x.shape[0])

    def energy_gradient(
        self,
        x: torch.Tensor,
        model_kwargs: dict | None = None,
        create_graph: bool = True,
    ) -> torch.Tensor:
        r"""$\nabla_x E_\theta(x)$, differentiable w.r.t. $\theta$ and ``x``.

        Args:
            x: Input ``(B, *event)``; it must require grad for second derivatives in
                ``x`` to be available (the losses pass a leaf with ``requires_grad``).
            model_kwargs: Conditioning.
            create_graph: Keep the graph (needed to train through the gradient).

        Returns:
            Tensor shaped like ``x``.
        """
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        if create_graph and self.training:
            from torchebm.core.distributed import needs_unsharded

            if needs_unsharded(self.model):
                raise RuntimeError(
                    f"{type(self).__name__} back-propagates through the energy gradient, which "
                    "FSDP2 frees between passes: run the loss forward and backward inside "
                    "`with torchebm.core.distributed.unsharded(model): ...` (BaseTrainer does "
                    "this automatically for score-matching losses)"
                )
        if self.use_autograd:
            with torch.enable_grad(), twice_differentiable(create_graph):
                e = self.energy(x, model_kwargs)
                (g,) = autograd_grad(e.sum(), x, create_graph=create_graph)
            call = _DDP_CALL.get()
            if create_graph and call is not None and call[0] is self:  # this loss's DDP call
                call[1] = "kept"
                return g + zero_multiple(e)  # an energy offset's zero gradient
            return g
        from torch.func import functional_call, grad

        fm = self.functional_model if self.functional_model is not None else self.model
        state = {**dict(fm.named_parameters()), **dict(fm.named_buffers())}
        conditioning = model_kwargs or {}

        def total_energy(xx: torch.Tensor) -> torch.Tensor:
            with self.autocast_context():
                e = functional_call(fm, state, (xx,), conditioning)
            return _checked_energies(e, xx.shape[0]).sum()

        with torch.enable_grad(), twice_differentiable(create_graph):
            g = grad(total_energy)(x)
        return g if create_graph else g.detach()

    def compute_score(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        model_kwargs: dict | None = None,
    ) -> torch.Tensor:
        r"""The energy gradient $\nabla_x E_\theta(\tilde x)$, $\tilde x = x + \text{noise}$
        (differentiable, ``create_graph=True``): torchebm 0.8.9's meaning, although the model
        score $s_\theta = -\nabla_x E_\theta$ is its negative.

        Every variant takes its gradients of the energy through this method, as in 0.8.9: a
        subclass that overrides it changes them all.

        Args:
            x: Samples `(B, *event)`. When it requires grad, the result stays differentiable
                in ``x`` (second derivatives, e.g. a Hessian trace); else a leaf copy is used.
            noise: Perturbation shaped like ``x``, or ``None``.
            model_kwargs: Conditioning of the model, or ``None``.
        """
        return self.energy_gradient(x if noise is None else x + noise, model_kwargs)

    def perturb_data(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(x + σξ, σξ)`` with $\xi \sim \mathcal N(0, I)$ and σ the current ``noise_scale``.

        Args:
            x: Data batch `(B, *event)`.
            generator: Source of $\xi$.
        """
        noise = self.noise_scale * torch.randn(
            x.shape, generator=generator, device=x.device, dtype=x.dtype
        )
        return x + noise, noise

    def add_regularization(
        self,
        loss: torch.Tensor,
        x: torch.Tensor,
        custom_reg_fn: Callable | None = None,
        reg_strength: float | None = None,
        model_kwargs: dict | None = None,
    ) -> torch.Tensor:
        r"""``loss + λ R(x)``; unchanged when λ (``reg_strength`` or the scheduled value) is 0.

        Args:
            loss: The scalar objective.
            x: Data batch `(B, *event)`.
            custom_reg_fn: $R$ as ``fn(x, model)`` returning a scalar (default: the
                constructor's ``custom_regularization``, else the built-in one).
            reg_strength: λ (default: the scheduled ``regularization_strength``).
            model_kwargs: Conditioning of the model, or ``None``.
        """
        strength = self.regularization_strength if reg_strength is None else reg_strength
        if strength <= 0:
            return loss
        fn = custom_reg_fn if custom_reg_fn is not None else self.custom_regularization
        if fn is not None:
            reg = fn(x, self.model)
            if not isinstance(reg, torch.Tensor) or reg.numel() != 1:
                raise ShapeError(
                    "custom_regularization must return a scalar tensor, got "
                    f"{getattr(reg, 'shape', type(reg).__name__)}"
                )
            reg = reg.reshape(())
        else:
            g = self.compute_score(x.detach(), model_kwargs=model_kwargs)
            reg = squared_norms(g).mean()
        return loss + strength * reg

    # the loop ----------------------------------------------------------------------------------
    @abstractmethod
    def compute_loss(
        self,
        x: torch.Tensor,
        *,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Scalar objective (mean over the batch) before regularisation.

        Args:
            x: Data batch `(B, *event)`.
            model_kwargs: Conditioning of the model, or ``None``.
            generator: Source of the noise and projections.
        """

    def forward(
        self,
        x: torch.Tensor,
        *,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Score-matching loss of the batch ``x``.

        Args:
            x: Data batch ``(B, *event)`` (cast to the loss's device/dtype).
            model_kwargs: Conditioning forwarded as ``model(x, **model_kwargs)``.
            generator: Source of every random draw of the call.
            **kwargs: Bare keyword conditioning, as torchebm 0.8.9 accepted it (deprecated:
                one ``DeprecationWarning``; use ``model_kwargs={...}``).

        Returns:
            Scalar loss.

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
            ShapeError: ``x`` is not batched, or the energies are not ``(B,)``.
            NonFiniteError: the loss is NaN/inf (``nan_policy="raise"``).
        """
        x = self.prepare_input(x)
        conditioning = loss_conditioning(self, x, model_kwargs, generator, kwargs)

        # eager in a compiled caller: AOTAutograd's backward cannot be differentiated again
        objective = eager_under_compile(self._objective)
        return checked_loss(
            self, lambda: objective(x, conditioning, generator), {"x": x}, conditioning
        )

    def _objective(
        self, x: torch.Tensor, conditioning: dict, generator: torch.Generator | None
    ) -> torch.Tensor:
        """`compute_loss` plus the regulariser, with autograd on (the objective differentiates
        E in x, under no_grad/inference_mode too).

        Under ``DistributedDataParallel`` (autograd on: the value may be back-propagated) the
        value carries a zero multiple of the energies (`zero_multiple`): a parameter that
        only shifts the energy (an output bias) gets no gradient through grad_x E, and DDP
        averages nothing until every parameter its forward used has one. `energy_gradient`
        adds it; where no call went through it (a `compute_score` override) one more energy
        evaluation does."""
        ddp = (
            torch.is_grad_enabled()
            and second_order_ddp(type(self).__name__, self.model) is not None
        )
        if ddp and not self.use_autograd:
            raise ConfigurationError(
                f"{type(self).__name__}(use_autograd=False) does not train a "
                "DistributedDataParallel model (its energy offset would get no gradient and "
                "DDP would average nothing): use use_autograd=True"
            )
        call = [self, "wanted"] if ddp else None
        token = _DDP_CALL.set(call)
        try:
            with torch.inference_mode(False), torch.enable_grad(), self._exact_layer_norms():
                xs = autograd_ready(x)
                value = self.compute_loss(xs, model_kwargs=conditioning, generator=generator)
                value = self.add_regularization(value, xs, model_kwargs=conditioning)
                if call is not None and call[1] == "wanted":
                    value = value + zero_multiple(self.energy(xs, conditioning))
        finally:
            _DDP_CALL.reset(token)
        return value if torch.is_grad_enabled() else value.detach()


#: The score-matching call under DDP in progress in this thread (a context variable: calls in
#: other threads have their own): ``[loss, "wanted"]``, ``"kept"`` once `energy_gradient`
#: added the zero multiple of the energies (see `_objective`); ``None`` otherwise.
_DDP_CALL: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "torchebm_score_matching_ddp_call", default=None
)


def _shares_no_trainable(model: nn.Module, other: nn.Module) -> bool:
    """Whether ``model`` has trainable parameters and ``other`` holds none of them."""
    mine = {id(p) for p in model.parameters() if p.requires_grad}
    return bool(mine) and mine.isdisjoint(id(p) for p in other.parameters())
