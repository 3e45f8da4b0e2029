r"""``torchebm.cuda``: fused Triton kernels and CUDA-graph helpers for TorchEBM's samplers.

Every function has an exact eager PyTorch fallback with the same signature, so this piece
works (and is tested) on any machine; the kernels run when the state is on a CUDA device and
Triton is importable (it ships with torch on Linux). Choose the path per call with
``force="auto" | "eager" | "triton"``.

* [`is_available`][torchebm.cuda.is_available]: can the fused kernels run here?
* [`fused_langevin_step`][torchebm.cuda.fused_langevin_step]: one Langevin update (noise, update and clamp in one kernel).
* [`langevin_chain`][torchebm.cuda.langevin_chain]: a whole Langevin chain of an elementwise analytic energy
  (double well, harmonic, diagonal Gaussian) in one kernel; [`supports_energy`][torchebm.cuda.supports_energy] probes.
* [`fused_leapfrog_step`][torchebm.cuda.fused_leapfrog_step]: the leapfrog trajectory of one HMC iteration.
* [`graphed_loop`][torchebm.cuda.graphed_loop]: replay a captured CUDA graph of a step loop (plain loop on CPU).

Samplers probe this piece with ``importlib.util.find_spec("torchebm.cuda")`` and never
import it unconditionally. ``python -m torchebm.cuda`` prints a self-check.

Example:
    >>> import torch
    >>> import torchebm.cuda as tc
    >>> x = torch.zeros(8, 2)
    >>> g = torch.Generator().manual_seed(0)
    >>> tc.fused_langevin_step(x, x.clone(), 0.01, generator=g, force="eager").shape
    torch.Size([8, 2])
"""

from importlib.metadata import version as _version

from torchebm.cuda._analytic import supports_energy
from torchebm.cuda._backend import interpreter_enabled, is_available, triton_available
from torchebm.cuda._chain import langevin_chain
from torchebm.cuda._graphs import graphed_loop
from torchebm.cuda._langevin import fused_langevin_step
from torchebm.cuda._leapfrog import fused_leapfrog_step

__version__ = _version("torchebm-cuda")

__all__ = [
    "is_available",
    "triton_available",
    "interpreter_enabled",
    "fused_langevin_step",
    "langevin_chain",
    "supports_energy",
    "fused_leapfrog_step",
    "graphed_loop",
]
