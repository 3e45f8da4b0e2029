r"""Model wrappers: classifier-free guidance, EqM fields as energies, batch-interaction energies."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torchebm.core import BaseModel, Schedulable, ScheduledParameter, TorchEBMModule
from torchebm.core._module import warn_user
from torchebm.core.errors import (
    ConfigurationError,
    ShapeError,
    check_finite,
    check_in,
    check_int,
    check_positive,
)
from torchebm.models._conditioning import explain_missing_y, warn_label_dropout

__all__ = ["LabelClassifierFreeGuidance", "EqMEnergy", "InteractionModel"]


def _first(out: Any) -> torch.Tensor:
    """Unwrap ``(field, activations)`` tuples returned by models that expose activations."""
    return out[0] if isinstance(out, (tuple, list)) else out


class LabelClassifierFreeGuidance(TorchEBMModule):
    r"""Classifier-free guidance for a label-conditioned field ``base(x, t, y=y)``.

    For ``cfg_scale = s > 1`` the wrapped field is

    $$
    f_s(x, t, y) = f(x, t, \varnothing) + s\,\big(f(x, t, y) - f(x, t, \varnothing)\big)
    $$

    on the first ``min(guide_channels, C)`` channels; the remaining channels (e.g. learned
    variances) are taken from the unconditional output, as in torchebm 0.8.9 (DiT's reference
    sampler keeps the conditional output's). A flat ``(B, D)`` output has its
    features on dimension 1: ``guide_channels=3`` (the default) then guides three of them
    and warns (``RuntimeWarning``); pass ``guide_channels=None`` for vector data. The
    conditional and unconditional evaluations run as **one** base call on a doubled batch
    (``[y, null]``); tensors in ``t`` and in ``**kwargs`` whose leading dimension is the
    batch are doubled too. For
    ``s <= 1`` it returns ``base(x, t, y=y)`` exactly (one call, no guidance). A base that
    returns a tuple contributes its first element, with or without guidance.

    Guidance is for sampling: put the base in ``eval()`` mode. A base in training mode with
    label dropout (``class_dropout_prob > 0``) drops some of the conditional labels to the
    null class at random, and the wrapper warns (``RuntimeWarning``).

    Args:
        base: Field called as ``base(x, t, y=labels, **kwargs)``; its output is batch first
            with channels on dimension 1.
        null_label_id: Label id of the unconditional ("null") class.
        cfg_scale: Guidance scale ``s``.
        guide_channels: Number of leading channels to guide (``None``: all channels).

    Example:
        >>> from torchebm.models import ConditionalTransformer2D
        >>> net = ConditionalTransformer2D(in_channels=1, out_channels=1, input_size=8,
        ...     patch_size=2, embed_dim=32, depth=1, num_heads=4, num_classes=10,
        ...     class_dropout_prob=0.1).eval()  # no label dropout while sampling
        >>> cfg = LabelClassifierFreeGuidance(net, null_label_id=10, cfg_scale=4.0)
        >>> cfg(torch.randn(2, 1, 8, 8), torch.rand(2), y=torch.tensor([3, 7])).shape
        torch.Size([2, 1, 8, 8])

    References:
        Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022.
    """

    def __init__(
        self,
        base: nn.Module,
        *,
        null_label_id: int,
        cfg_scale: float = 1.0,
        guide_channels: int | None = 3,
    ):
        super().__init__()
        if not callable(base):
            raise TypeError(f"base must be a callable field, got {type(base).__name__}")
        self.base = base
        self.null_label_id = check_int("null_label_id", null_label_id, minimum=0)
        own = getattr(base, "null_label_id", None)  # DiT and friends know their null class
        if isinstance(own, int) and own != self.null_label_id:
            raise ConfigurationError(
                f"null_label_id={null_label_id} differs from the null class of the base "
                f"{type(base).__name__} ({own})"
            )
        self.cfg_scale = check_finite("cfg_scale", cfg_scale)  # NaN/inf made the field NaN
        self.guide_channels = (
            None
            if guide_channels is None
            else check_int("guide_channels", guide_channels, minimum=1)
        )

    def _call_base(self, x: torch.Tensor, t: Any, y: torch.Tensor, kwargs: dict) -> torch.Tensor:
        try:
            return _first(self.base(x, t, y=y, **kwargs))
        except TypeError as err:
            explain_missing_y(type(self).__name__, self.base, err, with_t=True)
            raise

    def forward(self, x: torch.Tensor, t: Any, *, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Guided field at ``(x, t)`` for labels ``y`` ``(B,)``; shaped like ``base``'s output.

        Args:
            x: Inputs `(B, *event)`.
            t: Times passed on to ``base``.
            y: Integer class labels `(B,)`; their unconditional twin uses ``null_label_id``.
            **kwargs: Further keywords of ``base``; tensors with ``B`` leading rows are
                doubled along with ``x``.
        """
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"y must be an integer tensor of labels, got {type(y).__name__}")
        warn_label_dropout(self.base)
        if self.cfg_scale <= 1.0:
            return self._call_base(x, t, y, kwargs)
        b = x.shape[0]
        if y.shape[0] != b:
            raise ShapeError(f"y must have shape ({b},), got {tuple(y.shape)}")

        def double(v: Any) -> Any:
            if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == b:
                return torch.cat([v, v], dim=0)
            return v

        y2 = torch.cat([y, torch.full_like(y, self.null_label_id)], dim=0)
        out = self._call_base(
            torch.cat([x, x], dim=0), double(t), y2, {k: double(v) for k, v in kwargs.items()}
        )
        cond, uncond = out[:b], out[b:]
        if out.ndim < 2:
            return uncond + self.cfg_scale * (cond - uncond)
        c = out.shape[1] if self.guide_channels is None else min(self.guide_channels, out.shape[1])
        if out.ndim == 2 and c < out.shape[1] and self.guide_channels == 3:  # the default
            warn_user(
                f"LabelClassifierFreeGuidance guides the first {c} of the {out.shape[1]} "
                f"features of a (B, D) output (guide_channels={self.guide_channels} counts "
                "an image's channels): the others take the unconditional field; pass "
                "guide_channels=None to guide every feature",
                RuntimeWarning,
            )
        guided = uncond[:, :c] + self.cfg_scale * (cond[:, :c] - uncond[:, :c])
        return torch.cat([guided, uncond[:, c:]], dim=1)


_EQM_TYPES = ("dot", "mean", "l2", "implicit")


class EqMEnergy(BaseModel):
    r"""Scalar energy view of an Equilibrium-Matching field, for gradient-based samplers.

    The field ``f(x, t)`` is evaluated at ``t = 0`` (EqM fields are time invariant; tuple
    outputs ``(field, activations)`` are unwrapped) and turned into an energy:

    * ``"dot"`` / ``"mean"`` (identical): $E(x) = \sum x \cdot f(x)$;
    * ``"l2"``: $E(x) = -\tfrac12 \lVert f(x) \rVert^2$;
    * ``"implicit"``: the field *is* the gradient, $\nabla E := f(x)$ (no energy value;
      [`forward`][torchebm.models.EqMEnergy.forward] reports $\sum x \cdot f(x)$ for monitoring only).

    The EqM target $-\dot x_t\, c(t)$ points from data to noise, so
    [`GradientDescentSampler`][torchebm.samplers.GradientDescentSampler] (``x <- x - eta * grad E``) moves
    towards the data.

    Args:
        field: Vector field called as ``field(x, t, **model_kwargs)``, output shaped like x.
        energy_type: ``"dot"``, ``"mean"``, ``"l2"`` or ``"implicit"`` (also ``"none"``,
            `EquilibriumMatchingLoss`'s name for it).

    Raises:
        ValueError: unknown ``energy_type``.

    Example:
        >>> from torchebm.models import MLPVelocity
        >>> f = MLPVelocity(2)
        >>> energy = EqMEnergy(f, "implicit")
        >>> energy.gradient(torch.randn(5, 2)).shape
        torch.Size([5, 2])

    References:
        Wang & Du, "Equilibrium Matching: Generative Modeling with Implicit Energy-Based
        Models", 2025.
    """

    def __init__(self, field: nn.Module, energy_type: str = "dot"):
        super().__init__()
        if not callable(field):
            raise TypeError(f"field must be a callable f(x, t), got {type(field).__name__}")
        self.field = field
        if energy_type == "none":  # EquilibriumMatchingLoss's name of the implicit field
            energy_type = "implicit"
        self.energy_type = check_in("energy_type", energy_type, _EQM_TYPES)

    @classmethod
    def from_loss(cls, loss: Any) -> EqMEnergy:
        """Wrap the model of an ``EquilibriumMatchingLoss`` with its energy type.

        Duck-typed: reads ``loss.model`` and ``loss.energy_type`` (``"none"``, implicit EqM,
        maps to ``"implicit"``).

        Args:
            loss: An [`EquilibriumMatchingLoss`][torchebm.losses.EquilibriumMatchingLoss]
                (or any object with ``model`` and ``energy_type``).
        """
        if not hasattr(loss, "model") or not hasattr(loss, "energy_type"):
            raise TypeError(
                "from_loss expects an EquilibriumMatchingLoss-like object with `model` and "
                f"`energy_type` attributes, got {type(loss).__name__}"
            )
        energy_type = "implicit" if loss.energy_type == "none" else loss.energy_type
        return cls(loss.model, energy_type)

    def _field(self, x: torch.Tensor, **model_kwargs: Any) -> torch.Tensor:
        if "t" in model_kwargs:  # the field's t is fixed: it went in twice, a raw TypeError
            raise ConfigurationError(
                "EqMEnergy evaluates its field at t = 0 (EqM fields are time invariant): "
                "model_kwargs must not hold 't'; wrap the field to fix another time"
            )
        t = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        f = _first(self.field(x, t, **model_kwargs))
        if f.shape != x.shape:
            raise ShapeError(
                f"the field must return a tensor shaped like x {tuple(x.shape)}, got {tuple(f.shape)}"
            )
        return f

    def forward(self, x: torch.Tensor, **model_kwargs: Any) -> torch.Tensor:
        """Energy ``(B,)`` of ``x`` ``(B, *event_shape)``.

        Args:
            x: Samples `(B, *event_shape)`.
            **model_kwargs: Keywords of the wrapped field (``y``, ...; not ``t``, fixed at 0).
        """
        f = self._field(x, **model_kwargs)
        if self.energy_type == "l2":
            return -0.5 * f.pow(2).reshape(x.shape[0], -1).sum(dim=1)
        return (x * f).reshape(x.shape[0], -1).sum(dim=1)

    def gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        """$\\nabla_x E$: the field itself for ``"implicit"``, autograd otherwise.

        As [`BaseModel.gradient`][torchebm.core.BaseModel.gradient]: shaped like ``x``, of its
        dtype, detached; a 1-D ``x`` ``(d,)`` is one sample.

        Args:
            x: Samples `(B, *event_shape)` or one sample `(d,)`.
            model_kwargs: Keywords of the wrapped field, or ``None``.

        Raises:
            TypeError, ShapeError: ``x`` not a tensor, or 0-d.
        """
        if self.energy_type != "implicit":
            return super().gradient(x, model_kwargs=model_kwargs)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 0:
            raise ShapeError("x must have at least 1 dimension (d,) or (B, d), got a scalar")
        if x.ndim == 1:  # one sample, as BaseModel.gradient treats it
            return self.gradient(x.unsqueeze(0), model_kwargs).squeeze(0)
        in_dtype = x.dtype
        if x.device != self.device and any(True for _ in self.parameters()):
            x = x.to(self.device)
        with torch.no_grad(), self.autocast_context():
            f = self._field(x, **(model_kwargs or {}))
        return f.detach().to(in_dtype)


class InteractionModel(Schedulable, BaseModel):
    r"""Energy with a batch-coupled repulsion between samples (Energy Matching generation).

    $$
    E_i(x) = V(x_i) - \frac{s}{2\sigma_w^2} \sum_{j=1}^{B} \lVert x_i - x_j \rVert^2,
    $$

    computed exactly in $O(BD)$ as
    $B\lVert x_i\rVert^2 + \sum_j \lVert x_j\rVert^2 - 2 x_i \cdot \sum_j x_j$.
    The gradient of the summed batch energy is

    $$
    \nabla_{x_i} \sum_k E_k = \nabla V(x_i) - \frac{2 s B}{\sigma_w^2} (x_i - \bar x),
    $$

    which [`gradient`][torchebm.models.InteractionModel.gradient] uses in closed form (``V.gradient`` when ``V`` is a
    [`BaseModel`][torchebm.core.BaseModel]), so Langevin samples repel each other. ``strength`` ``s`` is a
    schedulable hyper-parameter (a number or a scheduler such as
    ``TemperatureScheduler(..., sqrt=False)``); it is stepped with the sampler's schedulers
    because the model lives in the sampler's module tree.

    Args:
        model: Scalar potential ``V`` (``(B, ...) -> (B,)``).
        sigma_w: Interaction length scale $\sigma_w > 0$.
        strength: Interaction strength ``s`` (number or scheduler).
        dtype: Dtype of the module's own tensors (``model``'s parameters, if any, win).
        device: Device of the module's own tensors (default CPU; likewise).

    Raises:
        ValueError: ``sigma_w <= 0``.

    Example:
        >>> from torchebm.core import HarmonicModel
        >>> m = InteractionModel(HarmonicModel(), sigma_w=1.0, strength=0.1)
        >>> m(torch.randn(4, 2)).shape
        torch.Size([4])

    References:
        Balcerak et al., "Energy Matching: Unifying Flow Matching and Energy-Based Models for
        Generative Modeling", 2025.
    """

    def __init__(
        self,
        model: nn.Module,
        sigma_w: float,
        strength: Any = 1.0,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        super().__init__(dtype=dtype, device=device)
        if not callable(model):
            raise TypeError(f"model must be a callable energy V(x), got {type(model).__name__}")
        self.model = model
        self.sigma_w = check_positive("sigma_w", sigma_w)
        self.strength = strength

    strength = ScheduledParameter()
    """Current interaction strength ``s``."""

    def _coef(self) -> float:
        return self.strength / self.sigma_w**2

    def forward(self, x: torch.Tensor, **model_kwargs: Any) -> torch.Tensor:
        """Per-sample energies ``(B,)`` (each depends on the whole batch).

        Args:
            x: Samples `(B, *event)` (a 1-D ``x`` is one sample).
            **model_kwargs: Keywords of the one-body model ``V``.
        """
        v = self.model(x, **model_kwargs)
        flat = x.reshape(1 if x.ndim == 1 else x.shape[0], -1)  # a 1-D x is one sample
        sq = flat.pow(2).sum(dim=1)
        pair = flat.shape[0] * sq + sq.sum() - 2.0 * flat @ flat.sum(dim=0)
        return v - 0.5 * self._coef() * pair

    def gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        """Gradient of the summed batch energy, closed-form interaction term (autograd through
        ``forward`` for a ``V`` that is not a `BaseModel` or a subclass redefining ``forward``).

        Args:
            x: Samples `(B, *event)` (a 1-D ``x`` is one sample).
            model_kwargs: Keywords of ``V``, or ``None``.

        Returns:
            $\\nabla_x \\sum_i E_i$, shaped like ``x``.
        """
        if (
            not isinstance(self.model, BaseModel)
            or type(self).forward is not InteractionModel.forward
            or "forward" in vars(self)
        ):
            return super().gradient(x, model_kwargs=model_kwargs)
        if x.ndim == 1:  # one sample (BaseModel's rule): no partner to repel
            return self.gradient(x.unsqueeze(0), model_kwargs).squeeze(0)
        grad_v = (
            self.model.gradient(x, model_kwargs=model_kwargs)
            if model_kwargs
            else self.model.gradient(x)
        )
        centred = x - x.mean(dim=0, keepdim=True)
        return grad_v - (2.0 * self._coef() * x.shape[0]) * centred.to(grad_v.dtype)
