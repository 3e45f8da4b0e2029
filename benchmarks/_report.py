"""Markdown table, progress lines and the ``--compare`` mode (stdlib only: no torch import)."""

from __future__ import annotations

import json
import math
import statistics
import sys
from typing import Any

TARGET_RATIO = 1.15
TARGET_GEOMEAN = 1.05

__all__ = ["compare", "markdown_table", "print_progress"]


def _ms(s: float | None) -> str:
    if s is None:
        return "-"
    ms = s * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def _mib(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**20:.1f}"


def _get(r: Any, key: str):
    return r.get(key) if isinstance(r, dict) else getattr(r, key)


def _geomean(values) -> float | None:
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def print_progress(r: Any) -> None:
    """One line per finished workload on stderr."""
    status = _get(r, "status")
    name = _get(r, "name")
    if status != "ok":
        print(f"  {name:26s} {status}", file=sys.stderr, flush=True)
        return
    ratio = _get(r, "ratio")
    if ratio is None:
        print(f"  {name:26s} no ratio", file=sys.stderr, flush=True)
        return
    flag = "" if ratio <= TARGET_RATIO else "  > target"
    print(
        f"  {name:26s} lib {_ms(_get(r, 'library_s')):>8s} ms  floor "
        f"{_ms(_get(r, 'floor_s')):>8s} ms  ratio {ratio:5.2f}{flag}  ({_get(r, 'wall_s'):.0f} s)",
        file=sys.stderr,
        flush=True,
    )


def markdown_table(results: list[Any], meta: dict[str, Any]) -> str:
    """The report: one row per workload, then the geometric mean and the misses."""
    lines = [
        "| workload | library ms | floor ms | ratio | lib peak MiB | floor peak MiB | check | notes |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    misses = []
    for r in results:
        status = _get(r, "status")
        if status != "ok":
            lines.append(f"| {_get(r, 'name')} | - | - | - | - | - | - | {status} |")
            continue
        ratio = _get(r, "ratio")
        mark = ""
        if ratio is not None and ratio > TARGET_RATIO and _get(r, "group") != "cuda":
            mark = " **!**"
            misses.append(f"{_get(r, 'name')} ({ratio:.2f}x)")
        lines.append(
            f"| {_get(r, 'name')} | {_ms(_get(r, 'library_s'))} | {_ms(_get(r, 'floor_s'))} | "
            f"{'-' if ratio is None else f'{ratio:.2f}'}{mark} | {_mib(_get(r, 'library_peak_bytes'))} | "
            f"{_mib(_get(r, 'floor_peak_bytes'))} | {_get(r, 'check') or '-'} | "
            f"{_get(r, 'notes') or ''} |"
        )
    gm = meta.get("geomean_ratio")
    n_ok = sum(
        1
        for r in results
        if _get(r, "status") == "ok" and _get(r, "ratio") is not None and _get(r, "group") != "cuda"
    )
    out = "\n".join(lines)
    gm_txt = "-" if gm is None else f"{gm:.3f}"
    gm_flag = "" if gm is None or gm <= TARGET_GEOMEAN else f" (target {TARGET_GEOMEAN})"
    out += (
        f"\n\nGeometric mean of {n_ok} ratios: **{gm_txt}**{gm_flag}. "
        f"Workloads above {TARGET_RATIO}x: {', '.join(misses) if misses else 'none'}."
    )
    out += (
        f"\n\ndevice {meta.get('device')}, threads {meta.get('threads')}, clock "
        f"{meta.get('clock', 'wall')}, repeats "
        f"{meta.get('repeats')}{' (quick)' if meta.get('quick') else ''}, torch "
        f"{meta.get('torch')}, git {meta.get('git')}, load average before {meta.get('load_before')} "
        f"after {meta.get('load_after')}, total {meta.get('total_s', 0):.0f} s."
    )
    return out


def compare(old_path: str, new_path: str) -> str:
    """Ratio and time change per workload between two result files."""
    with open(old_path) as f:
        old = json.load(f)
    with open(new_path) as f:
        new = json.load(f)
    old_r = {r["name"]: r for r in old["results"]}
    new_r = {r["name"]: r for r in new["results"]}
    names = list(old_r) + [n for n in new_r if n not in old_r]
    lines = [
        f"old: {old_path} ({old['meta'].get('git')}, {old['meta'].get('timestamp')})",
        f"new: {new_path} ({new['meta'].get('git')}, {new['meta'].get('timestamp')})",
        "",
        "| workload | old ratio | new ratio | ratio change | old lib ms | new lib ms | lib time change |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def ok(r):
        return r is not None and r.get("status") == "ok"

    for name in names:
        a, b = old_r.get(name), new_r.get(name)
        ra = a["ratio"] if ok(a) else None
        rb = b["ratio"] if ok(b) else None
        la = a["library_s"] if ok(a) else None
        lb = b["library_s"] if ok(b) else None
        dr = f"{(rb / ra - 1) * 100:+.1f}%" if ra and rb else "-"
        dl = f"{(lb / la - 1) * 100:+.1f}%" if la and lb else "-"
        lines.append(
            f"| {name} | {'-' if ra is None else f'{ra:.2f}'} | "
            f"{'-' if rb is None else f'{rb:.2f}'} | {dr} | {_ms(la)} | {_ms(lb)} | {dl} |"
        )
    ga = old["meta"].get("geomean_ratio")
    gb = new["meta"].get("geomean_ratio")
    common = [n for n in names if ok(old_r.get(n)) and ok(new_r.get(n))]
    ca = _geomean([old_r[n]["ratio"] for n in common])
    cb = _geomean([new_r[n]["ratio"] for n in common])
    lines.append("")
    lines.append(
        f"geometric mean: old {ga if ga is None else f'{ga:.3f}'}, new "
        f"{gb if gb is None else f'{gb:.3f}'}; over the {len(common)} workloads in both: "
        f"{ca if ca is None else f'{ca:.3f}'} -> {cb if cb is None else f'{cb:.3f}'}"
    )
    return "\n".join(lines)


def pool(paths: list[str], *, target: float = TARGET_RATIO) -> str:
    """Pool several runs of the same code: per workload, the median of the runs' ratios and
    the best library time over all runs divided by the best floor time over all runs.

    One run's ratio carries the machine's run-to-run noise (on a shared 2-core machine about
    +-15%). The median of the per-run ratios keeps each run's interleaving of library and
    floor (robust to a machine that drifts between runs) and drops an outlier run; the
    pooled best is best-of-N with N summed over the runs. The flags and the geometric mean
    use the median.
    """
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    gits = sorted({str(r["meta"].get("git")) for r in runs})
    names: list[str] = []
    for run in runs:
        names += [r["name"] for r in run["results"] if r["name"] not in names]
    lines = [
        f"pooled runs: {', '.join(paths)} (git {', '.join(gits)})",
        "",
        "| workload | median ratio | per-run ratios | pooled best ratio | best lib ms | best floor ms |",
        "|---|---:|---|---:|---:|---:|",
    ]
    medians, over = [], []
    for name in names:
        rows = [r for run in runs for r in run["results"] if r["name"] == name]
        rows = [r for r in rows if r.get("status") == "ok" and r.get("floor_s")]
        if not rows:
            lines.append(f"| {name} | - | - | - | - | - |")
            continue
        lib = min(min(r.get("library_samples") or [r["library_s"]]) for r in rows)
        flo = min(min(r.get("floor_samples") or [r["floor_s"]]) for r in rows)
        median = statistics.median(r["ratio"] for r in rows)
        if rows[0].get("group") != "cuda":
            medians.append(median)
        flag = ""
        if median > target:
            flag = " **!**"
            over.append(name)
        each = ", ".join(f"{r['ratio']:.2f}" for r in rows)
        lines.append(
            f"| {name} | {median:.2f}{flag} | {each} | {lib / flo:.2f} | {_ms(lib)} | {_ms(flo)} |"
        )
    g = _geomean(medians)
    lines += [
        "",
        f"Geometric mean of {len(medians)} median ratios: "
        f"{'-' if g is None else f'{g:.3f}'}; above {target}x: {', '.join(over) or 'none'}.",
    ]
    return "\n".join(lines)
