r"""`ClassifierFreeGuidance`: guidance for any conditioning (labels, embeddings, ...)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torchebm.core import BaseModel, substitute_condition
from torchebm.core.errors import ConfigurationError, check_finite, check_int
from torchebm.models._conditioning import explain_missing_y, warn_label_dropout

__all__ = ["ClassifierFreeGuidance"]


class ClassifierFreeGuidance(BaseModel):
    r"""Classifier-free guidance around a conditional field ``model(x, t, y=y)``.

    $$ f_w(x, t, y) = f(x, t, \varnothing) + w\,\big(f(x, t, y) - f(x, t, \varnothing)\big), $$

    where $\varnothing$ is ``y`` with every row replaced by ``null_condition`` (see
    `torchebm.core.substitute_condition`: a label id, a null embedding tensor or a callable).
    Both evaluations run as one call on a doubled batch; tensors in ``t`` and ``**kwargs``
    whose leading dimension is the batch are doubled too. ``w = 0`` is the unconditional
    field and ``w = 1`` the conditional one (one call each); without ``y`` the model is
    called unguided. With ``guide_channels`` only the leading channels are guided and the
    rest are taken from the unconditional output (e.g. DiT's learned variances), as in
    torchebm 0.8.9; DiT's reference sampler (``forward_with_cfg``) keeps the conditional
    output's rest instead. A model in training mode that drops labels at random (label
    dropout) gets a ``RuntimeWarning``: call ``.eval()`` before sampling.

    It is a [`BaseModel`][torchebm.core.BaseModel], as in torchebm 0.8.9: around a
    conditional *energy* (output ``(B,)``), ``gradient(x, model_kwargs={"y": y})`` is the
    guided energy's gradient, so the MCMC samplers sample the guided energy.

    This is the general wrapper; `LabelClassifierFreeGuidance` is the label-id case with
    0.8.9's rules: it returns the conditional field for every scale $\le 1$ (here $w < 1$
    interpolates towards the unconditional field) and guides 3 channels by default.

    Args:
        model: Conditional field, called as ``model(x, t, y=y, **kwargs)`` (or
            ``model(x, y=y, **kwargs)`` when ``t`` is ``None``); a tuple output's first
            entry is used.
        guidance_scale: $w$.
        null_condition: The unconditional value of ``y`` (required).
        guide_channels: Number of leading channels (dim 1) to guide; ``None`` guides all.

    Example:
        >>> from torchebm.models import DiT
        >>> net = DiT(input_size=8, in_channels=1, patch_size=2, embed_dim=32, depth=1,
        ...           num_heads=4, num_classes=10)
        >>> guided = ClassifierFreeGuidance(net, guidance_scale=4.0, null_condition=10)
        >>> guided(torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([3, 7])).shape
        torch.Size([2, 1, 8, 8])

    References:
        Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022.
    """

    model: nn.Module
    guidance_scale: float
    null_condition: Any
    guide_channels: int | None

    def __init__(
        self,
        model: nn.Module,
        guidance_scale: float,
        null_condition: Any,
        guide_channels: int | None = None,
    ):
        super().__init__()
        if not callable(model):
            raise TypeError(f"model must be a callable field, got {type(model).__name__}")
        w = check_finite("guidance_scale", guidance_scale)  # NaN/inf made the field NaN
        if null_condition is None:
            raise ConfigurationError(
                "null_condition is required: the label id, null embedding or callable that "
                "stands for 'no condition'"
            )
        self.model = model
        self.guidance_scale = w
        self.null_condition = null_condition
        self.guide_channels = (
            None
            if guide_channels is None
            else check_int("guide_channels", guide_channels, minimum=1)
        )

    def _call(self, x: torch.Tensor, t: Any, y: Any, kwargs: dict) -> torch.Tensor:
        if y is not None:
            kwargs = {**kwargs, "y": y}
        try:
            out = self.model(x, **kwargs) if t is None else self.model(x, t, **kwargs)
        except TypeError as err:
            if y is not None:
                explain_missing_y(type(self).__name__, self.model, err, with_t=t is not None)
            raise
        return out[0] if isinstance(out, (tuple, list)) else out

    def _null(self, y: torch.Tensor) -> torch.Tensor:
        return substitute_condition(
            y, torch.ones(y.shape[0], dtype=torch.bool, device=y.device), self.null_condition
        )

    def forward(
        self, x: torch.Tensor, t: Any = None, y: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Guided field at ``(x, t)`` for conditioning ``y`` `(B, ...)`; shaped like the model's output.

        Args:
            x: Inputs `(B, *event)`.
            t: Times passed on to ``model`` (``None``: the model is called without ``t``).
            y: Conditioning `(B, ...)`; ``None`` calls the model once, unguided.
            **kwargs: Further keywords of ``model``; tensors with ``B`` leading rows are
                doubled along with ``x``.
        """
        w = self.guidance_scale
        if y is not None:
            warn_label_dropout(self.model)
        if y is None or w == 1.0:
            return self._call(x, t, y, kwargs)
        if w == 0.0:
            return self._call(x, t, self._null(y), kwargs)
        b = x.shape[0]

        def double(v: Any) -> Any:
            if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == b:
                return torch.cat([v, v], dim=0)
            return v

        out = self._call(
            torch.cat([x, x]),
            double(t),
            torch.cat([y, self._null(y)]),
            {k: double(v) for k, v in kwargs.items()},
        )
        cond, uncond = out[:b], out[b:]
        if self.guide_channels is None or out.ndim < 2:
            return uncond + w * (cond - uncond)
        c = min(self.guide_channels, out.shape[1])
        guided = uncond[:, :c] + w * (cond[:, :c] - uncond[:, :c])
        return torch.cat([guided, uncond[:, c:]], dim=1)
