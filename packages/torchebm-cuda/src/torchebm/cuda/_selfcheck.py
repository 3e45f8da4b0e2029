r"""``python -m torchebm.cuda``: report the backend and check each kernel against its fallback."""

from __future__ import annotations

import math
import sys

import torch

from torchebm.core import DoubleWellModel, HarmonicModel
from torchebm.cuda._backend import (
    interpreter_enabled,
    is_available,
    triton_available,
    triton_import_error,
)
from torchebm.cuda._chain import langevin_chain
from torchebm.cuda._langevin import fused_langevin_step
from torchebm.cuda._leapfrog import fused_leapfrog_step

__all__ = ["main"]


def _checks(device: str, b: int, d: int) -> list[tuple[str, float, float]]:
    """``(name, measured, tolerance)`` rows; a row passes when ``measured <= tolerance``."""
    gen = torch.Generator(device).manual_seed(0)
    x, g, e = (torch.randn(b, d, generator=gen, device=device) for _ in range(3))
    rows = []
    k = fused_langevin_step(x, g, 0.01, clamp=(-2, 2), noise=e, force="triton")
    r = fused_langevin_step(x, g, 0.01, clamp=(-2, 2), noise=e, force="eager")
    rows.append(("step: max |kernel - eager|", (k - r).abs().max().item(), 1e-6))
    z = torch.zeros(max(b * d, 1 << 16), 1, device=device)  # 5 SE of the variance: 0.028
    eps = fused_langevin_step(z, z, 0.5, generator=gen, force="triton").double()
    n = eps.numel()
    rows.append(("step noise: |mean|", abs(eps.mean().item()), 5 / math.sqrt(n)))
    rows.append(("step noise: |var - 1|", abs(eps.var().item() - 1), 5 * math.sqrt(2 / n)))
    noise = torch.randn(9, b, d, generator=gen, device=device)
    model = DoubleWellModel()
    x0 = x.clamp(-2.0, 2.0)  # a randn tail (|x| > 4) diverges in the double well at h = 0.01
    k = langevin_chain(x0, model, 9, 0.01, noise=noise, force="triton")
    r = langevin_chain(x0, model, 9, 0.01, noise=noise, force="eager")
    rows.append(("chain: max |kernel - eager|", (k - r).abs().max().item(), 1e-5))
    hm = HarmonicModel()
    for name, fn in (("analytic", hm), ("callable", hm.gradient)):
        kt = fused_leapfrog_step(x, g, fn, 0.05, 5, mass=2.0, force="triton")
        rt = fused_leapfrog_step(x, g, fn, 0.05, 5, mass=2.0, force="eager")
        err = max((a - c).abs().max().item() for a, c in zip(kt, rt))
        rows.append((f"leapfrog ({name}): max |kernel - eager|", err, 1e-5))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the backend report and the kernel checks; return a process exit code.

    Args:
        argv: Command-line arguments (``--help`` only; ``None``: none).
    """
    import argparse
    from importlib.metadata import version

    argparse.ArgumentParser(
        prog="python -m torchebm.cuda",
        description="Report torchebm-cuda's backend (Triton, CUDA) and check its kernels "
        "against their eager fallbacks (on a GPU, or on CPU under TRITON_INTERPRET=1); exit "
        "status 1 when a check fails.",
    ).parse_args([] if argv is None else argv)

    print(f"torchebm-cuda {version('torchebm-cuda')}, torch {torch.__version__}")
    if triton_available():
        import triton

        print(f"triton {triton.__version__}")
    elif (broken := triton_import_error()) is not None:
        print(f"triton: installed but failed to import ({broken}); eager fallback in use")
    else:
        print("triton: not installed (every function uses its eager fallback)")
    cuda = torch.cuda.is_available()
    print(f"CUDA device: {torch.cuda.get_device_name() if cuda else 'none'}")
    print(f"fused kernels available: {is_available()}")
    if is_available():
        device, b, d = "cuda", 4096, 32
    elif triton_available() and interpreter_enabled():
        print("TRITON_INTERPRET=1: checking the kernels in Triton's CPU interpreter")
        device, b, d = "cpu", 64, 8
    else:
        print("nothing to check: the eager fallback is in use (TRITON_INTERPRET=1 checks on CPU)")
        return 0
    failed = False
    for name, value, tol in _checks(device, b, d):
        ok = value <= tol
        failed |= not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {name:42s} {value:.3e} (<= {tol:.1e})")
    print("timings: python benchmarks/cuda_langevin.py (in the source tree)")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
