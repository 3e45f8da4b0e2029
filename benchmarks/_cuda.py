"""The CUDA engineer's Langevin kernels (``benchmarks/cuda_langevin.py``) as suite rows.

``cuda_langevin.run(sizes, n_steps, device, methods=..., repeats=...)`` times each method
beside its own hand-written in-place ``baseline`` loop (rotating rounds, best of N, every
output checked against the baseline, generators reseeded) and returns one dict per (size,
method); each non-baseline row becomes a result whose ratio is ``method / baseline``. It runs with
``--device cuda`` (every method), or on CPU when selected explicitly with
``--only cuda_langevin`` (eager method only: the GPU kernels and torch.compile are skipped).
"""

from __future__ import annotations

import importlib.util

from _harness import Config, Result, Skip

__all__ = ["cuda_results"]


def cuda_results(config: Config, explicit: bool) -> list[Result]:
    if config.device.type != "cuda" and not explicit:
        raise Skip("GPU kernels: run with --device cuda (or --only cuda_langevin on CPU)")
    if importlib.util.find_spec("torchebm.cuda") is None:
        raise Skip("torchebm-cuda is not installed")
    import cuda_langevin

    gpu = config.device.type == "cuda"
    n_steps = config.size(500, 50) if gpu else config.size(50, 10)
    methods = cuda_langevin.METHODS if gpu else ("baseline", "eager", "sampler")
    rows = cuda_langevin.run(
        cuda_langevin.DEFAULT_SIZES,
        n_steps,
        config.device,
        methods=methods,
        repeats=config.repeats,
        min_time=config.min_time,
    )
    base = {(r["chains"], r["dims"]): r for r in rows if r["method"] == "baseline"}
    out = []
    for r in rows:
        if r["method"] == "baseline":
            continue
        b = base.get((r["chains"], r["dims"]))
        size = f"{r['chains']}x{r['dims']}"
        res = Result(
            f"cuda_langevin_{r['method']}_{size}",
            "cuda",
            f"DoubleWell Langevin, {r['method']} vs hand-written loop, {size}",
        )
        res.library_s = r["ms_per_step"] * n_steps / 1e3
        res.floor_s = None if b is None else b["ms_per_step"] * n_steps / 1e3
        res.ratio = None if b is None else r["ms_per_step"] / b["ms_per_step"]
        res.repeats = config.repeats
        res.check = r.get("check", "")
        res.notes = f"{n_steps} steps, best of {config.repeats}" + (
            f", compile {r['compile_s']} s once" if "compile_s" in r else ""
        )
        if res.ratio is None:
            res.status = "error: no baseline row"
        out.append(res)
    return out
