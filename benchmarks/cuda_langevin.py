r"""Langevin sampling speed: eager, torch.compile, CUDA graph and fused Triton kernels.

Workload: overdamped Langevin on the double-well energy ``E(x) = h sum_i (x_i^2 - b^2)^2``
(closed-form gradient), ``x <- x - eta grad E(x) + sqrt(2 eta) xi``, for several
``chains x dims`` sizes. Each method is timed beside a minimal hand-written PyTorch loop
doing the same maths (``baseline``); the report gives ms per step and the speed-up over it.

Methods (those that need a GPU are skipped on CPU):

* ``baseline``: hand-written loop, ``x = x - eta * (4h x (x^2 - b^2)) + c * randn_like(x)``.
* ``eager``: ``fused_langevin_step(x, model.gradient(x), ..., force="eager")`` per step.
* ``compiled``: the eager step under ``torch.compile(dynamic=True)`` (compiled once, reused
  for every size; compile time reported separately). On CPU Inductor's own RNG lowering is
  slow; ``--fallback-random`` makes it call aten's generator instead (and makes compiled
  draws equal the eager ones).
* ``cuda_graph`` (GPU): the eager step replayed by ``torchebm.cuda.graphed_loop`` (each timed
  run captures its graph once, so use enough steps to amortise it: 500 by default on GPU).
* ``fused`` (GPU): the fused Triton step kernel per step.
* ``fused_graph`` (GPU): the fused step replayed by ``graphed_loop``.
* ``fused_chain`` (GPU): ``langevin_chain``, the whole chain in one kernel.
* ``sampler``: ``LangevinDynamics(model, step_size).sample(x, n_steps)`` with the default
  ``backend="auto"``: the eager loop on CPU; on a GPU with Triton the whole-chain kernel,
  one call per ``nan_check_every`` (10) steps, plus the sampler's NaN checks.

Run ``python benchmarks/cuda_langevin.py [--device cpu|cuda] [--n-steps 50]``; import
``run(sizes, n_steps, device)`` to get the rows as dicts.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch

import torchebm.cuda as tc
from torchebm.core import DoubleWellModel
from torchebm.samplers import LangevinDynamics

__all__ = ["run", "to_markdown", "METHODS", "DEFAULT_SIZES"]

DEFAULT_SIZES = ((64, 8), (256, 32), (1024, 128))
METHODS = (
    "baseline",
    "eager",
    "compiled",
    "cuda_graph",
    "fused",
    "fused_graph",
    "fused_chain",
    "sampler",
)
GPU_ONLY = {"cuda_graph", "fused", "fused_graph", "fused_chain"}

STEP_SIZE = 1e-3
BARRIER, B = 2.0, 1.0

_COMPILED: dict[str, Callable] = {}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn`` in seconds over ``repeats`` runs (after one warm-up run)."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _compiled_step() -> Callable:
    """One compiled eager step, shared by every size (dynamic shapes: compiled once)."""
    if "step" not in _COMPILED:
        model = DoubleWellModel(BARRIER, B)

        def step(x):
            return tc.fused_langevin_step(x, model.gradient(x), STEP_SIZE, force="eager")

        _COMPILED["step"] = torch.compile(step, dynamic=True)
    return _COMPILED["step"]


def _workloads(x0: torch.Tensor, n_steps: int) -> dict[str, Callable[[], torch.Tensor]]:
    device = x0.device
    model = DoubleWellModel(BARRIER, B, device=device)
    h, c, a, b2 = STEP_SIZE, math.sqrt(2 * STEP_SIZE), 4.0 * BARRIER, B * B
    gen = torch.Generator(device).manual_seed(0)

    def baseline():
        x = x0
        for _ in range(n_steps):
            x = (
                x
                - h * (a * x * (x * x - b2))
                + c * torch.randn(x.shape, generator=gen, device=device)
            )
        return x

    def eager_step(x):
        return tc.fused_langevin_step(x, model.gradient(x), h, generator=gen, force="eager")

    def fused_step(x):
        return tc.fused_langevin_step(x, model.gradient(x), h, generator=gen, force="triton")

    def loop(step):
        def go():
            x = x0
            for _ in range(n_steps):
                x = step(x)
            return x

        return go

    def compiled():
        step = _compiled_step()
        x = x0
        for _ in range(n_steps):
            x = step(x)
        return x

    sampler = LangevinDynamics(model, step_size=h)

    def sample():
        return sampler.sample(x=x0, n_steps=n_steps, generator=gen)

    work = {
        "baseline": baseline,
        "eager": loop(eager_step),
        "compiled": compiled,
        "sampler": sample,
    }
    if device.type == "cuda":
        work["cuda_graph"] = lambda: tc.graphed_loop(eager_step, x0, n_steps, generator=gen)
        if tc.is_available():
            work["fused"] = loop(fused_step)
            work["fused_graph"] = lambda: tc.graphed_loop(fused_step, x0, n_steps, generator=gen)
            work["fused_chain"] = lambda: tc.langevin_chain(
                x0, model, n_steps, h, generator=gen, check_finite=False
            )
    return work


def run(
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    n_steps: int = 50,
    device: str | torch.device = "cpu",
    *,
    methods: Sequence[str] = METHODS,
    repeats: int = 3,
) -> list[dict]:
    """Time each method at each ``(chains, dims)`` size; one dict per (size, method).

    Keys: ``method, device, chains, dims, n_steps, ms_per_step, speedup_vs_baseline`` and,
    for ``compiled``, ``compile_s`` (first-call time, paid once per process). Methods that
    cannot run on ``device`` (GPU-only ones on CPU, kernels without Triton) are left out.
    """
    device = torch.device(device)
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"methods must be a subset of {list(METHODS)}, got {sorted(unknown)}")
    rows: list[dict] = []
    for chains, dims in sizes:
        x0 = torch.randn(
            chains, dims, device=device, generator=torch.Generator(device).manual_seed(1)
        )
        work = _workloads(x0, n_steps)
        base = None
        for name in METHODS:
            if name not in methods or name not in work:
                continue
            extra = {}
            if name == "compiled" and "compile_s" not in _COMPILED:
                t0 = time.perf_counter()
                _compiled_step()(x0)
                _sync(device)
                _COMPILED["compile_s"] = time.perf_counter() - t0  # type: ignore[assignment]
                extra["compile_s"] = round(_COMPILED["compile_s"], 2)  # type: ignore[arg-type]
            secs = _time(work[name], device, repeats)
            ms = 1e3 * secs / n_steps
            if name == "baseline":
                base = ms
            rows.append(
                dict(
                    method=name,
                    device=str(device),
                    chains=chains,
                    dims=dims,
                    n_steps=n_steps,
                    ms_per_step=ms,
                    speedup_vs_baseline=(base / ms) if base else None,
                    **extra,
                )
            )
    return rows


def to_markdown(rows: Sequence[dict]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| method | device | chains x dims | ms/step | speed-up vs baseline | note |",
        "|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        sp = r.get("speedup_vs_baseline")
        note = f"compile {r['compile_s']:.1f} s (once)" if "compile_s" in r else ""
        lines.append(
            f"| {r['method']} | {r['device']} | {r['chains']}x{r['dims']} | "
            f"{r['ms_per_step']:.4f} | {'' if sp is None else f'{sp:.2f}x'} | {note} |"
        )
    return "\n".join(lines)


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        b, d = part.lower().split("x")
        out.append((int(b), int(d)))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--n-steps", type=int, default=None, help="steps per timed run (default: 50 CPU, 500 GPU)"
    )
    parser.add_argument("--sizes", default=",".join(f"{b}x{d}" for b, d in DEFAULT_SIZES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--fallback-random",
        action="store_true",
        help="compile with torch._inductor.config.fallback_random (aten RNG, eager-equal draws)",
    )
    args = parser.parse_args(argv)
    if args.fallback_random:
        import torch._inductor.config as inductor_config

        inductor_config.fallback_random = True
    n_steps = args.n_steps or (500 if torch.device(args.device).type == "cuda" else 50)
    rows = run(
        _parse_sizes(args.sizes),
        n_steps,
        args.device,
        methods=args.methods.split(","),
        repeats=args.repeats,
    )
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, fused kernels "
        f"available: {tc.is_available()}, inductor fallback_random: {args.fallback_random}\n"
    )
    print(to_markdown(rows))


if __name__ == "__main__":
    main()
