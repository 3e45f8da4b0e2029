r"""Small training utilities: ``update_ema``, ``requires_grad`` and functional checkpoints."""

from __future__ import annotations

import argparse
import numbers
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchebm.core.distributed import (
    is_main_process,
    load_model_state_dict,
    load_optimizer_state_dict,
    model_state_dict,
    optimizer_state_dict,
    unwrap_model,
)
from torchebm.core.errors import ConfigurationError, check_int, check_probability

__all__ = ["update_ema", "requires_grad", "save_checkpoint", "load_checkpoint"]


def _check_module(name: str, value: Any, kind: Any = nn.Module) -> Any:
    if not isinstance(value, kind):  # a module, or an optimizer (or None)
        want = "an nn.Module" if kind is nn.Module else "a torch.optim.Optimizer"
        raise TypeError(f"{name} must be {want}, got {type(value).__name__}")
    return value


@torch.no_grad()
def update_ema(ema_model: nn.Module, model: nn.Module, decay: float = 0.9999) -> None:
    r"""Exponential moving average of parameters, matched by name.

    $\bar p \leftarrow d\,\bar p + (1 - d)\,p$ for every parameter ``p`` of ``model``
    (wrappers stripped; the copy follows ``p``'s device). Buffers are not averaged.

    Args:
        ema_model: The averaged copy (e.g. a frozen ``copy.deepcopy(model)``).
        model: The model being trained; each parameter needs a counterpart of the same
            name and shape in ``ema_model`` (else ``ValueError``).
        decay: $d \in [0, 1]$; ``0`` copies the weights, ``1`` freezes the EMA.

    Example:
        >>> import copy; model = torch.nn.Linear(2, 1); ema = copy.deepcopy(model)
        >>> requires_grad(ema, False); update_ema(ema, model, decay=0.999)  # after each step
    """
    ema = unwrap_model(_check_module("ema_model", ema_model))
    live = unwrap_model(_check_module("model", model))
    d = check_probability("decay", decay)
    ema_params = dict(ema.named_parameters())
    for name, p in live.named_parameters():
        e = ema_params.get(name)
        if e is None:
            msg = f"ema_model has no parameter named {name!r} (model and ema_model must match)"
            raise ConfigurationError(msg)
        if e.shape != p.shape:
            got = f"shape {tuple(e.shape)}, model has {tuple(p.shape)}"
            raise ConfigurationError(f"ema_model parameter {name!r} has {got}")
        if e.device != p.device:
            e.data = e.data.to(p.device)
        src = p.detach().to(e.dtype)  # d = 0 copies (0 * inf would leave an inf EMA at NaN)
        e.copy_(src) if d == 0.0 else e.mul_(d).add_(src, alpha=1.0 - d)


def requires_grad(model: nn.Module, flag: bool = True) -> None:
    """Set ``requires_grad = flag`` on every parameter of ``model``."""
    _check_module("model", model)
    if not isinstance(flag, bool):
        raise TypeError(f"flag must be a bool, got {flag!r}")
    for p in model.parameters():
        p.requires_grad_(flag)


_PLAIN: Any = {bool: bool, numbers.Integral: int, numbers.Real: float, str: str, type(None): None}


def _plain(name: str, value: Any) -> Any:
    """``value`` in types ``torch.load(weights_only=True)`` accepts (numpy scalars made plain)."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    for kind, plain in {**_PLAIN, torch.Tensor: None}.items():
        if isinstance(value, kind):
            return value if plain is None else plain(value)
    if isinstance(value, (list, tuple)):
        return (tuple if isinstance(value, tuple) else list)(_plain(name, v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(name, v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    kinds = "None/bool/int/float/str/tensors/lists/dicts (so that torch.load(weights_only=True)"
    raise TypeError(f"{name} must hold only {kinds} can read it), got {type(value).__name__}")


def save_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    step: int,
    checkpoint_dir: str | os.PathLike,
    ema_model: nn.Module | None = None,
    args: Any = None,
) -> str:
    r"""Save ``{"model", "opt", "step"[, "ema", "args"]}`` to ``<checkpoint_dir>/<step:07d>.pt``.

    Keys are those of the bare model (wrappers stripped); an FSDP2 model is gathered (a
    collective: call it on every rank). Only rank 0 writes, and the others return at once:
    `barrier()` before they read it. ``args``: a ``Namespace`` or a dict of plain values.

    Returns:
        The path, a ``str`` as in torchebm 0.8.9 (every rank), loaded with ``weights_only=True``."""
    _check_module("model", model)
    step = check_int("step", step, minimum=0)
    _check_module("optimizer", optimizer, (torch.optim.Optimizer, type(None)))
    state: dict[str, Any] = {"model": model_state_dict(model), "step": step}
    if optimizer is not None:
        state["opt"] = optimizer_state_dict(model, optimizer)
    if ema_model is not None:
        state["ema"] = model_state_dict(_check_module("ema_model", ema_model))
    if args is not None:
        state["args"] = _plain("args", args)
    path = Path(checkpoint_dir) / f"{step:07d}.pt"
    if is_main_process():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".pt.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
    return str(path)


def load_checkpoint(
    checkpoint_path: str | os.PathLike,
    model: nn.Module,
    ema_model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    device: Any = None,
) -> dict[str, Any]:
    """Load a [`save_checkpoint`][torchebm.core.save_checkpoint] file (``weights_only=True``) into whichever objects are given.

    ``model``, ``ema_model`` and ``optimizer`` receive ``"model"``, ``"ema"`` and ``"opt"``
    (when given and present); ``device`` is the ``map_location`` (default CPU). Returns the
    loaded dict (``ckpt["step"]``, ``ckpt.get("args")``)."""
    _check_module("model", model)
    _check_module("optimizer", optimizer, (torch.optim.Optimizer, type(None)))
    ema_model = None if ema_model is None else _check_module("ema_model", ema_model)
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint_path {str(path)!r} does not exist")
    state = torch.load(path, map_location="cpu" if device is None else device, weights_only=True)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"checkpoint_path {str(path)!r} is not a torchebm checkpoint (no 'model')")
    load_model_state_dict(model, state["model"])
    if ema_model is not None and "ema" in state:
        load_model_state_dict(ema_model, state["ema"])
    if optimizer is not None and "opt" in state:
        load_optimizer_state_dict(model, optimizer, state["opt"])
    return state
