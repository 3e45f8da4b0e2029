"""TorchEBM benchmark suite: every hot path beside a minimal hand-written PyTorch loop.

Usage (``nox -s bench -- <flags>`` runs the same with every piece installed)::

    python benchmarks/run.py                       # full run, table + JSON in benchmarks/results/
    python benchmarks/run.py --quick               # reduced sizes and repeats (a smoke run)
    python benchmarks/run.py --only langevin_mlp hmc_gaussian
    python benchmarks/run.py --only samplers       # a group name selects all its workloads
    python benchmarks/run.py --json out.json --repeats 7
    python benchmarks/run.py --compare old.json new.json
    python benchmarks/run.py --pool run1.json run2.json run3.json   # best times over runs
    python benchmarks/run.py --list

Each workload is timed as best-of-N wall time per call after warm-up, interleaving the
library and the floor, with ``torch.set_num_threads`` fixed (``--threads``, default
``$OMP_NUM_THREADS`` or 2). The report gives ``ratio = library / floor``, the peak memory
of one call of each, and flags workloads above the targets (1.15x each, 1.05x geometric
mean). Targets are reported, never asserted: the exit status is non-zero only when a
workload fails to run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

RESULTS = HERE / "results"


def _default_threads() -> int:
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "2")))
    except ValueError:
        return 2


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Time every TorchEBM hot path beside a hand-written PyTorch floor.",
    )
    p.add_argument("--quick", action="store_true", help="reduced sizes and 2 repeats")
    p.add_argument("--only", nargs="+", metavar="NAME", help="workload or group names")
    p.add_argument("--json", metavar="PATH", help="write the results here (default: results/)")
    p.add_argument("--markdown", metavar="PATH", help="write the table here (default: results/)")
    p.add_argument(
        "--compare", nargs=2, metavar=("OLD", "NEW"), help="print the ratio change per workload"
    )
    p.add_argument(
        "--pool",
        nargs="+",
        metavar="RUN",
        help="pool several result files of the same code (best times over all runs)",
    )
    p.add_argument("--repeats", type=int, help="timed samples per side (default 5, quick 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per side first")
    p.add_argument("--min-time", type=float, help="seconds per timed sample (short calls loop)")
    p.add_argument(
        "--budget",
        type=float,
        help="seconds of timed samples per workload (default 8, quick 1): sets the repeats",
    )
    p.add_argument("--threads", type=int, default=_default_threads(), help="torch threads")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time (default) or process CPU time (steadier on a shared machine; CPU only)",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory calls")
    p.add_argument(
        "--default-malloc",
        action="store_true",
        help="keep glibc's default mmap/trim thresholds (page faults then add timing noise)",
    )
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    return p.parse_args(argv)


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return f"{rev}{'+dirty' if dirty else ''}" if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _select(workloads, only):
    if not only:
        return list(workloads)
    names = {w.name for w in workloads}
    groups = {w.group for w in workloads}
    unknown = [o for o in only if o not in names and o not in groups]
    if unknown:
        raise SystemExit(
            f"unknown workload(s) {unknown}; choose from {sorted(names)} or groups {sorted(groups)}"
        )
    return [w for w in workloads if w.name in only or w.group in only]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from _report import compare, markdown_table, pool, print_progress

    if args.compare:
        print(compare(*args.compare))
        return 0
    if args.pool:
        print(pool(args.pool))
        return 0

    import torch
    from _harness import Config, geomean, load_average, measure, measure_rows, steady_malloc
    from _workloads import all_workloads

    selected = _select(all_workloads(), args.only)
    if args.list:
        for w in selected:
            print(f"{w.name:28s} {w.group:12s} {w.description}")
        return 0

    steady = False if args.default_malloc else steady_malloc()
    threads = max(1, args.threads)
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    min_time = args.min_time if args.min_time is not None else (0.02 if args.quick else 0.05)
    config = Config(
        device=device,
        quick=args.quick,
        repeats=max(1, repeats),
        warmup=max(0, args.warmup),
        min_time=min_time,
        budget=args.budget if args.budget is not None else (1.0 if args.quick else 8.0),
        threads=threads,
        clock=args.clock,
    )
    load_before = load_average()
    print(
        f"torchebm benchmarks: {len(selected)} workloads, device={device}, threads={threads}, "
        f"repeats={config.repeats}, clock={args.clock}{', quick' if args.quick else ''}, "
        f"load={load_before}",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()
    results = []
    for w in selected:
        if w.rows is not None:
            explicit = bool(args.only) and (w.name in args.only or w.group in args.only)
            rows = measure_rows(w, config, explicit)
        else:
            rows = [measure(w, config, memory=not args.no_memory)]
        for r in rows:
            results.append(r)
            print_progress(r)
    total = time.perf_counter() - t0
    # the cuda rows compare kernels with their own baseline (speed-ups): not in the geomean
    ratios = [r.ratio for r in results if r.ok and r.ratio is not None and r.group != "cuda"]
    meta = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": _git_revision(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": threads,
        "clock": args.clock,
        "steady_malloc": steady,
        "quick": args.quick,
        "repeats": config.repeats,
        "warmup": config.warmup,
        "min_time_s": config.min_time,
        "budget_s": config.budget,
        "load_before": load_before,
        "load_after": load_average(),
        "total_s": total,
        "geomean_ratio": geomean(ratios),
    }
    table = markdown_table(results, meta)
    print(table)

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = Path(args.json) if args.json else RESULTS / f"bench-{stamp}.json"
    md_path = Path(args.markdown) if args.markdown else json_path.with_suffix(".md")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(
        json.dumps({"meta": meta, "results": [r.to_dict() for r in results]}, indent=2) + "\n"
    )
    md_path.write_text(table + "\n")
    if not args.json:
        (RESULTS / "latest.json").write_text(json_path.read_text())
        (RESULTS / "latest.md").write_text(table + "\n")
    print(f"\nwrote {json_path} and {md_path} ({total:.0f} s)", file=sys.stderr)
    return 1 if any(r.status.startswith("error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
