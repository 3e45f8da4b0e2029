r"""``TorchEBMModule``: the ``nn.Module`` base of everything in TorchEBM that holds tensors."""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["TorchEBMModule", "check_bool", "forward_kwargs", "warn_once", "warn_user"]

_WARNED: set[str] = set()
_EDITS = [0]  # submodules and parameters set, modules moved: the placement caches' version
_SKIP = ("torchebm", "torch", "abc")  # packages whose frames a warning skips (abc: ABCMeta)


def warn_user(message: str, category: type[Warning] = UserWarning, stacklevel: int = 2) -> None:
    """``warnings.warn`` at the user's line: the first frame from ``stacklevel`` on outside
    torchebm, torch and ``abc``, however many library frames (subclasses, decorators) lie between."""
    f, n = inspect.currentframe(), 1  # warnings.warn(stacklevel=n) here names the frame f
    while f and (n <= stacklevel or f.f_globals.get("__name__", "").split(".")[0] in _SKIP):
        f, n = f.f_back, n + 1
    warnings.warn(message, category, stacklevel=n)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a ``bool`` (``bool("False")`` would turn a flag on), else ``TypeError``."""
    if type(value) is not bool:
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_float_dtype(name: str, dtype: Any) -> torch.dtype:
    """``dtype`` if it is a floating-point ``torch.dtype``, else ``TypeError`` naming ``name``."""
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"{name} must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def warn_once(
    key: str, message: str, category: type[Warning] = DeprecationWarning, stacklevel: int = 3
) -> None:
    """`warn_user` (the first frame from ``stacklevel`` on outside torchebm) once per ``key``."""
    if key not in _WARNED:
        _WARNED.add(key)
        warn_user(message, category, stacklevel)


def _keep_absent_extra_state(module: nn.Module, state_dict: dict, prefix: str, *_: Any) -> None:
    """Load pre-hook: a state dict without the module's extra state (torchebm 0.8.9 wrote
    none) keeps the current one, under ``strict=True`` too."""
    key = prefix + "_extra_state"
    if key not in state_dict and type(module).get_extra_state is not nn.Module.get_extra_state:
        state_dict[key] = module.get_extra_state()


def _normalise_device(device: Any) -> torch.device:
    device = torch.device(device)
    return torch.device("cuda") if device.type == "cuda" and device.index == 0 else device


class TorchEBMModule(nn.Module):
    r"""Base ``nn.Module`` with device/dtype resolution, autocast and conditioning helpers.

    ``device`` and ``dtype`` are read-only: those of the first parameter of the module tree
    (a sampler reports its model's), else those of a zero-element probe buffer made with the
    constructor's ``device``/``dtype``, except that a submodule's floating-point buffer, if
    any, gives the device (a sampler over a ``GaussianModel`` runs where its buffers are).
    ``.to()``, ``.cuda()``, ``.double()`` update both.

    Args:
        device: Initial device of the probe (default: CPU, torch's default device).
        dtype: Initial floating-point dtype of the probe (default: ``torch.get_default_dtype()``).

    Example:
        >>> m = TorchEBMModule(dtype=torch.float64)
        >>> m.dtype
        torch.float64
    """

    # registered buffer (zero elements): placement fallback when the tree has no parameter
    _torchebm_probe: torch.Tensor

    def __init__(self, device: Any = None, dtype: torch.dtype | None = None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        dtype = torch.get_default_dtype() if dtype is None else check_float_dtype("dtype", dtype)
        try:
            dev = torch.device(device) if device is not None else None
        except (RuntimeError, TypeError) as exc:
            msg = f"device must be a torch.device or device string, got {device!r}"
            raise ValueError(msg) from exc
        try:
            probe = torch.empty(0, device=dev, dtype=dtype)
        except (RuntimeError, AssertionError, ImportError) as exc:  # a device torch cannot use
            no_cuda = dev is not None and dev.type == "cuda" and not torch.cuda.is_available()
            why = "CUDA is not available" if no_cuda else str(exc).split("\n")[0]
            kind = RuntimeError if isinstance(exc, RuntimeError) else type(exc)  # torch's kind
            raise kind(f"device={device!r} cannot be used: {why}") from exc
        self.register_buffer("_torchebm_probe", probe, persistent=False)
        self.use_mixed_precision = self.autocast_available = False
        self._amp_dtype = torch.float16
        self._placement: tuple[Any, ...] | None = None  # see _resolve_placement
        if hasattr(self, "register_load_state_dict_pre_hook"):  # public since torch 2.5
            self.register_load_state_dict_pre_hook(_keep_absent_extra_state)

    def _resolve_placement(self) -> tuple[torch.device, torch.dtype]:
        cache = None if torch.compiler.is_compiling() else self.__dict__.get("_placement")
        if cache is not None and cache[0] == _EDITS[0]:
            ref: Any = self  # the tensor now at the path read (no reference is kept: torch
            for name in cache[1]:  # may swap it), not a property (a weight parametrized since)
                ref = None if hasattr(type(ref), name) else getattr(ref, name, None)
            if isinstance(ref, torch.Tensor) and ref.device == cache[2] and ref.dtype == cache[3]:
                return cache[4]  # (.to() moves a parameter in place: device/dtype compared)
        probe = self._torchebm_probe
        name, ref = next(self.named_parameters(), ("_torchebm_probe", probe))
        dtype = ref.dtype  # the first parameter's; else the probe's, with the device of
        if ref is probe:  # a submodule's floating buffer if there is one (Gaussian models)
            for key, buf in self.named_buffers():  # a submodule's buffer has a dotted name
                if "." in key and buf.is_floating_point() and not key.endswith("_torchebm_probe"):
                    name, ref = key, buf
                    break
        placement = (_normalise_device(ref.device), dtype)
        if not torch.compiler.is_compiling():  # traced, _EDITS would guard: a recompile per edit
            self._placement = (_EDITS[0], tuple(name.split(".")), ref.device, ref.dtype, placement)
        return placement

    @property
    def device(self) -> torch.device:
        """Device of the first parameter in the tree, else of a submodule's buffer or the probe."""
        return self._resolve_placement()[0]

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the first parameter in the tree, else of the probe buffer."""
        return self._resolve_placement()[1]

    def _apply(self, fn, *args, **kwargs):  # type: ignore[override]
        out = super()._apply(fn, *args, **kwargs)
        _EDITS[0] += 1  # every placement cache is out of date
        return out

    def add_module(self, name: str, module: nn.Module | None) -> None:  # type: ignore[override]
        super().add_module(name, module)
        _EDITS[0] += 1

    def register_parameter(self, name: str, param: nn.Parameter | None) -> None:
        super().register_parameter(name, param)
        _EDITS[0] += 1

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if isinstance(value, nn.Module):  # (a Parameter goes through register_parameter)
            _EDITS[0] += 1

    # ------------------------------------------------------------------ precision
    def setup_mixed_precision(
        self, use_mixed_precision: bool, amp_dtype: torch.dtype = torch.float16
    ) -> None:
        """Enable autocast for this module's hot loops (CUDA only; warns and disables on CPU)."""
        if check_bool("use_mixed_precision", use_mixed_precision) and self.device.type != "cuda":
            warn_user(f"Mixed precision requires CUDA; full precision on {self.device.type}")
            use_mixed_precision = False
        self.use_mixed_precision = self.autocast_available = bool(use_mixed_precision)
        self._amp_dtype = amp_dtype

    def autocast_context(self) -> contextlib.AbstractContextManager:
        """``torch.amp.autocast`` when mixed precision is enabled, else a null context."""
        if self.use_mixed_precision and self.autocast_available:
            return torch.amp.autocast(device_type=self.device.type, dtype=self._amp_dtype)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ conditioning
    def _prepare_model_kwargs(self, model_kwargs: dict | None) -> dict:
        """Normalise conditioning: ``None`` -> ``{}``; tensors moved (not cast) to ``self.device``,
        an inference tensor copied (the energy gradient's autograd cannot save it, e.g. ``y``)."""
        if model_kwargs is not None and not isinstance(model_kwargs, dict):
            raise TypeError(f"model_kwargs must be a dict, got {type(model_kwargs).__name__}")
        kwargs = dict(model_kwargs or {})
        for k, v in kwargs.items():
            if isinstance(v, torch.Tensor):  # the copy of an inference tensor is a normal one
                with torch.inference_mode(False):
                    kwargs[k] = v.to(self.device, non_blocking=True, copy=v.is_inference())
        return kwargs

    def _resolve_model_kwargs(
        self,
        model_kwargs: dict | None,
        legacy_kwargs: dict | None = None,
        *,
        warn_key: str | None = None,
    ) -> dict:
        """Merge deprecated bare keyword conditioning (``loss(x, y=labels)``, one
        ``DeprecationWarning``) into ``model_kwargs`` (which wins a clash) and normalise it."""
        kwargs = self._prepare_model_kwargs(model_kwargs)  # checked first: a dict or None
        if legacy_kwargs:
            key, owner = warn_key or f"{type(self).__name__}.bare_model_kwargs", type(self).__name__
            msg = f"passing conditioning as bare keyword arguments ({sorted(legacy_kwargs)}) to "
            warn_once(key + msg, msg + f"{owner} is deprecated; pass model_kwargs={{...}} instead")
            kwargs = {**self._prepare_model_kwargs(legacy_kwargs), **kwargs}  # model_kwargs wins
        return kwargs


def forward_kwargs(scope: Mapping[str, Any], init: Callable, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments a constructor passes on to its base's ``init``.

    Every parameter of ``init`` that the calling constructor also takes is read from its
    ``scope`` (``locals()``), so the options a family shares (``dtype``, ``device``,
    ``nan_policy``, ``n_steps``, the conditioning options of the losses) and the base's own
    arguments are passed on in one place; ``overrides`` fix the rest (e.g. ``persistent=True``).

    Example:
        >>> super().__init__(**forward_kwargs(locals(), super().__init__))  # doctest: +SKIP
    """
    names = inspect.signature(init).parameters
    return {**{n: scope[n] for n in names if n in scope and n != "self"}, **overrides}
