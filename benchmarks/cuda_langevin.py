r"""Langevin sampling speed: eager, torch.compile, CUDA graph and fused Triton kernels.

Workload: overdamped Langevin on the double-well energy ``E(x) = h sum_i (x_i^2 - b^2)^2``
(closed-form gradient), ``x <- x - eta grad E(x) + sqrt(2 eta) xi``, for several
``chains x dims`` sizes. Each method is timed beside a minimal hand-written PyTorch loop
doing the same maths (``baseline``); the report gives ms per step and the speed-up over it.

Methods (those that need a GPU are skipped on CPU):

* ``baseline``: hand-written loop, in place on preallocated buffers (no temporaries per
  step): ``g = x (x^2 - b^2)``, ``x -= 4 h eta g``, ``x += c * noise.normal_()``.
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

Timing is the main suite's: every method of a size is called once untimed (compilation,
caches) and its output checked against the baseline, then ``repeats`` rounds time each
method in a rotating order (so a change of machine load hits all of them), each sample
looping the call until it lasts ``min_time``; the best sample counts. Every call reseeds
its generator. The check: a noise-free run (``noise_scale=1e-30``) of every method equals the
noise-free baseline (the drift maths), and the noisy runs of the methods that draw from the
same generator stream as the baseline (eager, sampler on CPU, CUDA graph) equal the
baseline's output; the compiled step draws from the global generator and the Triton
kernels with their own counter-based Philox, so only their drift is compared.

Run ``python benchmarks/cuda_langevin.py [--device cpu|cuda] [--n-steps 50]``; import
``run(sizes, n_steps, device)`` to get the rows as dicts.
"""

from __future__ import annotations

import argparse
import gc
import math
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
#: noise scale of the drift check: the noise is 1e-32, far below float32 rounding of x
#: (the sampler accepts only noise_scale > 0)
QUIET = 1e-30
BARRIER, B = 2.0, 1.0

_COMPILED: dict[str, Callable] = {}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_block(fn: Callable[[], object], device: torch.device, number: int) -> float:
    """Seconds per call of ``fn`` over ``number`` back-to-back calls (GC off)."""
    gc.collect()
    gc.disable()
    try:
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        _sync(device)
        return (time.perf_counter() - t0) / number
    finally:
        gc.enable()


def _time_all(
    work: dict[str, Callable[[], object]], device: torch.device, repeats: int, min_time: float
) -> dict[str, float]:
    """Best-of-``repeats`` seconds per call of each method, rounds in rotating order."""
    first = {}
    for name, fn in work.items():
        first[name] = _time_block(fn, device, 1)
    number = {k: max(1, math.ceil(min_time / max(t, 1e-7))) for k, t in first.items()}
    best = dict.fromkeys(work, math.inf)
    names = list(work)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            best[name] = min(best[name], _time_block(work[name], device, number[name]))
    return best


def _compiled_step(noise_scale: float = 1.0) -> Callable:
    """One compiled eager step per noise scale, shared by every size (dynamic shapes).

    It draws from the global generator (a ``torch.Generator`` argument would break the
    graph), which the ``compiled`` method reseeds.
    """
    key = f"step{noise_scale}"
    if key not in _COMPILED:
        model = DoubleWellModel(BARRIER, B)

        def step(x):
            return tc.fused_langevin_step(
                x, model.gradient(x), STEP_SIZE, noise_scale, force="eager"
            )

        _COMPILED[key] = torch.compile(step, dynamic=True)
    return _COMPILED[key]


def _workloads(
    x0: torch.Tensor, n_steps: int, noise_scale: float = 1.0
) -> dict[str, Callable[[], torch.Tensor]]:
    device = x0.device
    model = DoubleWellModel(BARRIER, B, device=device)
    h, a, b2 = STEP_SIZE, 4.0 * BARRIER, B * B
    c = noise_scale * math.sqrt(2 * STEP_SIZE)
    gen = torch.Generator(device)
    buffers = [torch.empty_like(x0) for _ in range(3)]

    def baseline():  # in place: x, gradient and noise live in preallocated buffers
        gen.manual_seed(0)
        x, g, noise = buffers
        x.copy_(x0)
        for _ in range(n_steps):
            torch.mul(x, x, out=g).sub_(b2).mul_(x)  # x (x^2 - b^2) = grad E / 4h
            x.add_(g, alpha=-h * a)
            if c:
                x.add_(noise.normal_(generator=gen), alpha=c)
        return x.clone()

    def eager_step(x):
        return tc.fused_langevin_step(
            x, model.gradient(x), h, noise_scale, generator=gen, force="eager"
        )

    def fused_step(x):
        return tc.fused_langevin_step(
            x, model.gradient(x), h, noise_scale, generator=gen, force="triton"
        )

    def loop(step):
        def go():
            gen.manual_seed(0)
            x = x0
            for _ in range(n_steps):
                x = step(x)
            return x

        return go

    def compiled():
        torch.manual_seed(0)
        step = _compiled_step(noise_scale)
        x = x0
        for _ in range(n_steps):
            x = step(x)
        return x

    sampler = LangevinDynamics(model, step_size=h, noise_scale=noise_scale, device=device)

    def sample():
        gen.manual_seed(0)
        return sampler.sample(x=x0, n_steps=n_steps, generator=gen)

    def seeded(fn):
        def go():
            gen.manual_seed(0)
            return fn()

        return go

    work = {
        "baseline": baseline,
        "eager": loop(eager_step),
        "compiled": compiled,
        "sampler": sample,
    }
    if device.type == "cuda":
        work["cuda_graph"] = seeded(lambda: tc.graphed_loop(eager_step, x0, n_steps, generator=gen))
        if tc.is_available():
            work["fused"] = loop(fused_step)
            work["fused_graph"] = seeded(
                lambda: tc.graphed_loop(fused_step, x0, n_steps, generator=gen)
            )
            work["fused_chain"] = seeded(
                lambda: tc.langevin_chain(
                    x0, model, n_steps, h, noise_scale, generator=gen, check_finite=False
                )
            )
    return work


def _same_stream(name: str, device: torch.device) -> bool:
    """Whether ``name`` draws its noise from the baseline's generator stream."""
    if name in ("baseline", "eager", "cuda_graph"):
        return True
    if name == "sampler":  # eager loop on CPU; the whole-chain kernel (Philox) on a GPU
        return device.type == "cpu"
    return False  # compiled: the global generator; Triton kernels: Philox


def _check(name: str, noisy: dict, quiet: dict, device: torch.device) -> str:
    """Agreement of ``name`` with the baseline; raises ``AssertionError`` beyond rounding."""
    tol = 1e-4
    parts = []
    pairs = [("drift", quiet)]
    if _same_stream(name, device):
        pairs.append(("noisy", noisy))
    for what, outs in pairs:
        d = float((outs[name].double() - outs["baseline"].double()).abs().max())
        if not d <= tol:
            raise AssertionError(f"{name}: {what} run differs from the baseline, max|d|={d:.3g}")
        parts.append(f"{what} max|d|={d:.1e}")
    if len(pairs) == 1:
        parts.append("own RNG")
    return ", ".join(parts)


def run(
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    n_steps: int = 50,
    device: str | torch.device = "cpu",
    *,
    methods: Sequence[str] = METHODS,
    repeats: int = 5,
    min_time: float = 0.05,
) -> list[dict]:
    """Time each method at each ``(chains, dims)`` size; one dict per (size, method).

    Keys: ``method, device, chains, dims, n_steps, ms_per_step, speedup_vs_baseline,
    check`` and, for ``compiled``, ``compile_s`` (first-call time, paid once per process).
    Methods that cannot run on ``device`` (GPU-only ones on CPU, kernels without Triton) are
    left out. Raises ``AssertionError`` when a method's output disagrees with the baseline.
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
        work = {k: work[k] for k in METHODS if k in work and (k in methods or k == "baseline")}
        extra: dict[str, float] = {}
        if "compiled" in work and "compile_s" not in _COMPILED:
            t0 = time.perf_counter()
            work["compiled"]()
            _sync(device)
            _COMPILED["compile_s"] = time.perf_counter() - t0  # type: ignore[assignment]
            extra["compile_s"] = round(_COMPILED["compile_s"], 2)  # type: ignore[arg-type]
        quiet_work = _workloads(x0, n_steps, noise_scale=QUIET)
        noisy = {k: fn() for k, fn in work.items()}
        quiet = {k: quiet_work[k]() for k in work}
        checks = {k: _check(k, noisy, quiet, device) for k in work if k != "baseline"}
        best = _time_all(work, device, repeats, min_time)
        base = 1e3 * best["baseline"] / n_steps
        for name in work:
            if name not in methods:
                continue
            ms = 1e3 * best[name] / n_steps
            row = dict(
                method=name,
                device=str(device),
                chains=chains,
                dims=dims,
                n_steps=n_steps,
                ms_per_step=ms,
                speedup_vs_baseline=base / ms,
                check=checks.get(name, ""),
            )
            if name == "compiled" and extra:
                row.update(extra)
            rows.append(row)
    return rows


def to_markdown(rows: Sequence[dict]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| method | device | chains x dims | ms/step | speed-up vs baseline | check | note |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for r in rows:
        sp = r.get("speedup_vs_baseline")
        note = f"compile {r['compile_s']:.1f} s (once)" if "compile_s" in r else ""
        lines.append(
            f"| {r['method']} | {r['device']} | {r['chains']}x{r['dims']} | "
            f"{r['ms_per_step']:.4f} | {'' if sp is None else f'{sp:.2f}x'} | "
            f"{r.get('check', '')} | {note} |"
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
    parser.add_argument("--repeats", type=int, default=5, help="best-of-N rounds")
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
