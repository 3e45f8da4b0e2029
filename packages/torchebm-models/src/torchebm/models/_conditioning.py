r"""Embedders and the conditioning vector shared by `DiT` and `TimeConditionedMLP`.

Both follow the torchebm 0.8.9 backbone contract ``forward(x, t=None, y=None, *,
cond=None)``: the conditioning vector is the sum of whichever of ``t_embedder(t)``,
``y_embedder(y)`` and a precomputed ``cond`` `(B, cond_dim)` are given.
"""

from __future__ import annotations

import inspect
import itertools
import numbers
from typing import Any, cast

import torch
from torch import nn

from torchebm.core._module import warn_user
from torchebm.core.distributed import unwrap_model
from torchebm.core.errors import ConfigurationError, ShapeError, check_int, check_probability
from torchebm.models.components import LabelEmbedder, MLPTimestepEmbedder

__all__ = [
    "build_embedders",
    "condition_vector",
    "check_input",
    "check_input_dtype",
    "explain_missing_y",
    "number_time",
    "warn_label_dropout",
]


def check_input(owner: str, x: Any, event: tuple[int | None, ...], dtype: torch.dtype) -> None:
    """``x`` must be a tensor of shape ``(B, *event)`` (``None``: any size there) and of the
    parameters' ``dtype`` (`check_input_dtype`), else a named error; torch's own ("mat1 and
    mat2 shapes cannot be multiplied") names neither the argument nor what is accepted."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner} expects x to be a torch.Tensor, got {type(x).__name__}")
    sizes = x.shape[1:]
    if len(sizes) != len(event) or any(e is not None and s != e for s, e in zip(sizes, event)):
        want = ", ".join("*" if e is None else str(e) for e in event)
        raise ShapeError(f"{owner} expects x of shape (B, {want}), got {tuple(x.shape)}")
    check_input_dtype(owner, x, dtype)


def check_input_dtype(owner: str, x: torch.Tensor, dtype: torch.dtype) -> None:
    """``x`` must have the parameters' ``dtype`` (any floating dtype under autocast, which
    casts it), else a `TypeError` naming both: torch's is "Input type (double) and bias type
    (float) should be the same", or "mat1 and mat2 must have the same dtype"."""
    if x.dtype == dtype or (x.is_floating_point() and torch.is_autocast_enabled(x.device.type)):
        return
    model = f" or the model (model.to({x.dtype}))" if x.is_floating_point() else ""
    raise TypeError(
        f"{owner} expects x of its parameters' dtype {dtype}, got {x.dtype}: cast the input "
        f"(x.to({dtype})){model}"
    )


def build_embedders(
    cond_dim: int,
    num_classes: int | None,
    class_dropout_prob: float,
    t_embedder: nn.Module | None,
    y_embedder: nn.Module | None,
) -> tuple[nn.Module, nn.Module | None]:
    """``(t_embedder, y_embedder)``: the given modules or the default MLP/label embedders.

    The default label embedder always has the null class (id ``num_classes``), so a model
    trained without label dropout can still be guided.
    """
    check_probability("class_dropout_prob", class_dropout_prob)
    if y_embedder is not None and (num_classes is not None or class_dropout_prob > 0):
        raise ConfigurationError(
            "pass either y_embedder or num_classes/class_dropout_prob, not both"
        )
    if class_dropout_prob > 0 and num_classes is None:
        raise ConfigurationError(
            f"class_dropout_prob={class_dropout_prob} needs num_classes (got None)"
        )
    t_emb = t_embedder if t_embedder is not None else MLPTimestepEmbedder(cond_dim)
    if y_embedder is None and num_classes is not None:
        n = check_int("num_classes", num_classes, minimum=1)
        y_embedder = LabelEmbedder(n, cond_dim, class_dropout_prob, null_token=True)
    return t_emb, y_embedder


def condition_vector(
    module: nn.Module,
    t: torch.Tensor | float | None,
    y: torch.Tensor | None,
    cond: torch.Tensor | None,
    batch: int | None = None,
) -> torch.Tensor:
    """Sum of the given conditionings, shape `(B, cond_dim)`.

    ``batch``: the batch size of the input; each conditioning has one row per sample or one
    row for all (a 0-d time too).

    Raises:
        ValueError: none given, ``y`` without a label embedder, ``cond`` of the wrong width,
            a conditioning with another number of rows than ``batch``, or a ``t`` with more
            than one value per row (`ShapeError`).
    """
    name = type(module).__name__
    if isinstance(t, numbers.Real) and not isinstance(t, bool):  # one time for every row
        t = number_time(t, batch or 1, _reference(module))
    for arg, value in (("t", t), ("y", y), ("cond", cond)):
        rows = value.shape[0] if isinstance(value, torch.Tensor) and value.ndim > 0 else 1
        if batch is not None and rows not in (1, batch):
            raise ShapeError(
                f"{arg} must have one row per sample of x (batch {batch}) or a single row, "
                f"got shape {tuple(value.shape)}"  # type: ignore[union-attr]
            )
    if isinstance(t, torch.Tensor) and t.numel() != (t.shape[0] if t.ndim else 1):
        raise ShapeError(f"t must hold one time per row, (B,) or (B, 1), got {tuple(t.shape)}")
    c = None
    if t is not None:
        c = cast(nn.Module, module.t_embedder)(t)
    if y is not None:
        emb = cast("nn.Module | None", module.y_embedder)
        if emb is None:
            raise ConfigurationError(
                f"y was given but this {name} has no label embedder; construct it with "
                "num_classes= or y_embedder="
            )
        e = emb(y, training=module.training) if isinstance(emb, LabelEmbedder) else emb(y)
        c = e if c is None else c + e
    if cond is not None:
        if cond.shape[-1] != module.cond_dim:
            raise ShapeError(
                f"cond has width {cond.shape[-1]}, expected cond_dim={module.cond_dim}"
            )
        if cond.is_floating_point():  # float64 features into a float32 model: its dtype
            cond = cond.to(_reference(module).dtype)
        c = cond if c is None else c + cond
    if c is None:
        raise ConfigurationError(f"{name}.forward needs at least one of t, y or cond")
    return c


def _reference(module: nn.Module) -> torch.Tensor:
    """A parameter giving the dtype/device of times and ``cond``: the time embedder's, or the
    model's where a custom embedder has none."""
    embedder = cast(nn.Module, module.t_embedder)
    return next(itertools.chain(embedder.parameters(), module.parameters()))


def explain_missing_y(owner: str, model: Any, err: TypeError, *, with_t: bool) -> None:
    """Raise a `TypeError` from ``err`` naming ``model``'s signature when it takes neither
    ``y`` nor ``**kwargs`` (a DDP or compiled wrapper is read through): the guidance wrapper
    ``owner`` called it with ``y`` and Python's error names neither. Return otherwise (the
    caller re-raises ``err``: the model's own error, or no signature to read). Called only
    after a call failed."""
    inner = unwrap_model(model) if isinstance(model, nn.Module) else model
    fn = inner.forward if isinstance(inner, nn.Module) else inner
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to decide with
        return
    params = sig.parameters.values()
    if any(p.name == "y" or p.kind is p.VAR_KEYWORD for p in params):
        return
    name = f"{type(inner).__name__}.forward" if isinstance(inner, nn.Module) else "the model"
    raise TypeError(
        f"{owner} calls model(x, {'t, ' if with_t else ''}y=...) but {name}{sig} takes no y: "
        "guide a conditional model (one whose forward takes y), or call the model without y"
    ) from err


def number_time(t: numbers.Real, batch: int, ref: torch.Tensor) -> torch.Tensor:
    """A Python-number time as a ``(batch,)`` tensor on ``ref``'s device, float64 for a float64
    model (a float32 tensor first rounded 999.7 to 999.70001), else the default dtype."""
    dtype = torch.promote_types(ref.dtype, torch.get_default_dtype())
    return torch.full((batch,), float(t), device=ref.device, dtype=dtype)


def warn_label_dropout(base: Any) -> None:
    """``RuntimeWarning`` when a guidance wrapper's ``base`` is in training mode with a label
    embedder that drops labels at random: some conditional rows become unconditional."""
    if not getattr(base, "training", False) or not isinstance(base, nn.Module):
        return
    if any(isinstance(m, LabelEmbedder) and m.dropout_prob > 0 for m in base.modules()):
        warn_user(
            f"{type(base).__name__} is in training mode and drops labels at random "
            "(label dropout for classifier-free guidance training): the guided field "
            "uses the null class for some conditional rows; call .eval() before sampling",
            RuntimeWarning,
        )
