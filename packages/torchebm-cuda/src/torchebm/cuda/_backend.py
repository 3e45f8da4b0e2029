r"""Backend probing and dispatch: the Triton kernel path or the eager PyTorch path.

Triton is imported lazily, on the first call that needs a kernel, so ``import torchebm.cuda``
is cheap and ``TRITON_INTERPRET=1`` may be set any time before that first call.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Any

import torch

from torchebm.core._module import warn_once
from torchebm.core.errors import ConfigurationError, MissingDependencyError, check_in

__all__ = [
    "is_available",
    "triton_available",
    "interpreter_enabled",
    "resolve_backend",
    "kernels",
    "BACKENDS",
]

#: accepted values of every ``force=`` argument
BACKENDS = ("auto", "eager", "triton")

_TRITON_OK: bool | None = None
_TRITON_IMPORT_ERROR: str | None = None  # why an installed triton failed to import
_KERNELS: ModuleType | None = None
_INSTALL_TRITON = "pip install triton (Linux with a CUDA GPU)"


def triton_available() -> bool:
    """``True`` when the ``triton`` package can be imported (it ships with torch on Linux)."""
    global _TRITON_OK, _TRITON_IMPORT_ERROR
    if _TRITON_OK is None:
        if importlib.util.find_spec("triton") is None:
            _TRITON_OK = False
        else:
            try:
                import triton  # noqa: F401
            except Exception as err:  # a broken install: unusable, and said so (not "missing")
                _TRITON_OK, _TRITON_IMPORT_ERROR = False, f"{type(err).__name__}: {err}"
            else:
                _TRITON_OK = True
    return _TRITON_OK


def triton_import_error() -> str | None:
    """Why an installed ``triton`` failed to import (``None``: it imports, or is not installed)."""
    triton_available()
    return _TRITON_IMPORT_ERROR


def _triton_missing(feature: str) -> MissingDependencyError:
    """The error of ``feature`` without an importable triton: the install command, or, for an
    installed triton that fails to import, its import error (reinstalling would not help)."""
    err = MissingDependencyError(feature, _INSTALL_TRITON)
    if (broken := triton_import_error()) is not None:
        err.msg = f"{feature}: triton is installed but `import triton` failed ({broken})"
        err.args = (err.msg,)
    return err


def interpreter_enabled() -> bool:
    """``True`` when ``TRITON_INTERPRET=1``: kernels then run on CPU tensors in Triton's interpreter.

    Triton reads the variable when a kernel is defined, so it must be set before the first
    kernel call of the process (in practice: in the environment of the process).
    """
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def is_available() -> bool:
    r"""Whether the fused Triton kernels can run here: ``triton`` importable and a CUDA device.

    When this is ``False`` every function of `torchebm.cuda` still works through its eager
    PyTorch fallback, with the same signature and the same maths.

    Example:
        >>> import torchebm.cuda
        >>> isinstance(torchebm.cuda.is_available(), bool)
        True
    """
    return torch.cuda.is_available() and triton_available()


def kernels() -> ModuleType:
    """The module holding the ``@triton.jit`` kernels (imported on first use)."""
    global _KERNELS
    if _KERNELS is None:
        if not triton_available():
            raise _triton_missing("torchebm.cuda's fused kernels")
        from torchebm.cuda import _kernels

        _KERNELS = _kernels
    return _KERNELS


def resolve_backend(force: Any, x: torch.Tensor, compiling: bool | None = None) -> str:
    """Pick ``"triton"`` or ``"eager"`` for a call whose main tensor is ``x``.

    ``force=None`` or ``"auto"`` takes the kernel path when ``x`` is on a CUDA device and Triton
    is importable, and the eager path otherwise (also while ``torch.compile`` traces the call:
    inductor then generates its own fused kernel from the eager maths). ``"eager"`` always
    takes the eager path. ``"triton"`` takes the kernel path or raises.

    Raises:
        ConfigurationError: ``force`` is not one of ``None, "auto", "eager", "triton"``, or
            ``force="triton"`` with ``x`` not on CUDA (outside Triton's interpreter).
        MissingDependencyError: ``force="triton"`` without an importable ``triton``.
    """
    mode = "auto" if force is None else check_in("force", force, BACKENDS)
    if mode == "eager":
        return "eager"
    if mode == "auto":
        if x.device.type != "cuda":
            return "eager"
        if compiling if compiling is not None else torch.compiler.is_compiling():
            return "eager"
        if triton_available():
            return "triton"
        if (broken := triton_import_error()) is not None:
            warn_once(
                "torchebm.cuda.broken_triton",
                f"triton is installed but `import triton` failed ({broken}): the fused kernels "
                "are off and the eager fallback runs",
                RuntimeWarning,
            )
        return "eager"
    if not triton_available():
        raise _triton_missing("force='triton'")
    if x.device.type == "cuda":
        return "triton"
    if x.device.type == "cpu" and interpreter_enabled():
        return "triton"
    raise ConfigurationError(
        f"force='triton' needs tensors on a CUDA device (or TRITON_INTERPRET=1 to run the "
        f"kernels on CPU in Triton's interpreter), got device {x.device}"
    )
