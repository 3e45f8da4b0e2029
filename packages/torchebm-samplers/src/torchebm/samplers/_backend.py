r"""Dispatch to the optional fused kernels of ``torchebm-cuda`` (never a hard dependency).

``torchebm.cuda`` is probed with `importlib.util.find_spec` and imported lazily, only
when a sampler actually wants a fused kernel. ``backend="auto"`` uses a kernel only when the
package is installed, provides it, and the chains live on a CUDA device; ``"eager"`` never
does; ``"fused"`` always does and raises [`MissingDependencyError`][torchebm.core.errors.MissingDependencyError]
when the package is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

import torch

from torchebm.core.errors import ConfigurationError, MissingDependencyError, check_in

__all__ = [
    "BACKENDS",
    "check_backend",
    "check_fused_integrator",
    "optional_kernel",
    "resolve_fused",
]

BACKENDS = ("auto", "eager", "fused")
_INSTALL = "pip install torchebm-cuda"


def check_backend(backend: Any) -> str:
    """Validate a ``backend`` constructor argument."""
    return check_in("backend", backend, BACKENDS)


def check_fused_integrator(backend: Any, integrator: Any, builtin: type, update: str) -> str:
    """Validate ``backend`` for a sampler whose fused kernel replaces its built-in integrator.

    Run by the constructor and again when sampling starts (either attribute may have been
    assigned since): ``"fused"`` with another integrator than ``builtin`` (a subclass too)
    is refused, as the kernel would replace the integrator's own steps.

    Args:
        backend: The sampler's ``backend``.
        integrator: The sampler's integrator instance.
        builtin: The integrator class the kernel implements.
        update: What the kernel implements, for the message (e.g. ``"leapfrog"``).

    Returns:
        The validated ``backend``.

    Raises:
        ConfigurationError: ``backend`` is not one of `BACKENDS`, or is ``"fused"`` with
            another integrator.
    """
    backend = check_backend(backend)
    if backend == "fused" and type(integrator) is not builtin:
        raise ConfigurationError(
            f"backend='fused' runs the built-in {update} only (the kernel would replace the "
            f"integrator's own steps), got integrator {type(integrator).__name__}: use "
            "backend='auto' or 'eager' with it"
        )
    return backend


def _cuda_module():
    try:
        spec = importlib.util.find_spec("torchebm.cuda")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None
    return importlib.import_module("torchebm.cuda")


def resolve_fused(
    backend: str, kernel: str, x: torch.Tensor, *, owner: str
) -> Callable[..., Any] | None:
    """The fused kernel ``torchebm.cuda.<kernel>`` to use for chains ``x``, or ``None`` (eager).

    Raises:
        MissingDependencyError: ``backend="fused"`` and ``torchebm-cuda`` is not installed.
        NotImplementedError: ``backend="fused"`` and the installed ``torchebm-cuda`` has no
            ``kernel``.
    """
    if backend == "eager":
        return None
    if backend == "auto" and (x.device.type != "cuda" or x.dtype != torch.float32):
        return None
    mod = _cuda_module()
    if mod is None:
        if backend == "fused":
            raise MissingDependencyError(f"{owner}(backend='fused')", _INSTALL)
        return None
    fn = getattr(mod, kernel, None)
    if fn is None and backend == "fused":
        raise NotImplementedError(
            f"{owner}(backend='fused') needs torchebm.cuda.{kernel}, which the installed "
            f"torchebm-cuda does not provide; upgrade it ({_INSTALL} --upgrade) or use "
            "backend='eager'"
        )
    return fn


def optional_kernel(name: str) -> Callable[..., Any] | None:
    """``torchebm.cuda.<name>`` when the piece is installed and provides it, else ``None``.

    For kernels a sampler uses only opportunistically (never an error when missing).
    """
    mod = _cuda_module()
    return None if mod is None else getattr(mod, name, None)
