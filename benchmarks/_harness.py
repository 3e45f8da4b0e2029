"""Timing and memory harness of the benchmark suite (no torchebm imports here).

A workload is a pair of zero-argument callables doing the same maths: ``library`` (through
the public torchebm API) and ``floor`` (a minimal hand-written PyTorch loop). Both are timed
in the same process, interleaved, as best-of-N wall time after warm-up, with a fixed thread
count. The reported figure is the ratio ``library / floor`` plus the peak memory of one call
of each (RSS high-water mark above the baseline on CPU, ``max_memory_allocated`` on CUDA).
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = [
    "Case",
    "Config",
    "Result",
    "Skip",
    "Workload",
    "geomean",
    "load_average",
    "measure",
    "measure_rows",
    "peak_memory",
    "steady_malloc",
    "sync",
]


class Skip(Exception):
    """Raised by a workload's ``build`` when it cannot run here (missing piece, no CUDA)."""


@dataclass
class Config:
    """Run-wide settings handed to every workload's ``build``."""

    device: torch.device
    quick: bool = False
    repeats: int = 5  # timed samples per side; cheap workloads get up to 3x more (budget)
    warmup: int = 1
    min_time: float = 0.05  # seconds per timed sample; short calls are looped to reach it
    budget: float = 8.0  # seconds of timed samples per workload: sets the adaptive repeats
    seed: int = 0
    threads: int = 2
    clock: str = "wall"  # "wall" (perf_counter) or "cpu" (process_time: robust on a busy machine)

    def now(self) -> float:
        if self.clock == "cpu" and self.device.type == "cpu":
            return time.process_time()
        return time.perf_counter()

    def size(self, full: int, quick: int) -> int:
        """``full`` in the default run, ``quick`` with ``--quick``."""
        return quick if self.quick else full


@dataclass
class Case:
    """One built workload: the two callables and what to say about them.

    Attributes:
        library: Zero-argument callable running the workload through torchebm.
        floor: Zero-argument callable doing the same maths by hand.
        check: Optional ``check(lib_out, floor_out) -> str`` run on the first (warm-up)
            outputs; returns a short agreement note (e.g. ``"max|d|=3e-7"``). It must raise
            ``AssertionError`` when the two disagree beyond what rounding explains.
        notes: Free text for the report (extra figures such as NFE).
        info: Callable returning extra notes computed after timing (e.g. NFE counters).
        timer: Optional ``timer(which) -> seconds`` replacing in-process timing (used by
            workloads that time a subprocess); ``which`` is ``"library"`` or ``"floor"``.
        memory: Optional ``memory(which) -> bytes`` replacing the in-process measurement.
        alt: Optional other floors ``{label: callable}`` (e.g. the same loop with an
            autograd gradient), timed in the same interleaved rounds; the report gives
            ``library / alt`` in the notes. The ratio always uses ``floor``.
    """

    library: Callable[[], Any]
    floor: Callable[[], Any]
    check: Callable[[Any, Any], str] | None = None
    notes: str = ""
    info: Callable[[], str] | None = None
    timer: Callable[[str], float] | None = None
    memory: Callable[[str], int | None] | None = None
    alt: dict[str, Callable[[], Any]] | None = None


@dataclass
class Workload:
    """A named benchmark: ``build(config) -> Case`` (setup is never timed).

    ``rows``, when set, replaces ``build``: ``rows(config, explicit) -> list[Result]`` for a
    workload that times itself and reports several rows (``explicit``: named in ``--only``).
    """

    name: str
    group: str
    description: str
    build: Callable[[Config], Case] | None = None
    rows: Callable[[Config, bool], list[Result]] | None = None


@dataclass
class Result:
    """Measured figures of one workload (times are seconds per call, best of ``repeats``)."""

    name: str
    group: str
    description: str
    status: str = "ok"  # "ok", "skipped: ...", "error: ..."
    library_s: float | None = None
    floor_s: float | None = None
    ratio: float | None = None
    library_peak_bytes: int | None = None
    floor_peak_bytes: int | None = None
    number: int = 1
    repeats: int = 0
    library_samples: list[float] = field(default_factory=list)
    floor_samples: list[float] = field(default_factory=list)
    alt_s: dict[str, float] = field(default_factory=dict)  # best time of each Case.alt floor
    check: str = ""
    notes: str = ""
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- primitives
def sync(device: torch.device) -> None:
    """Wait for queued device work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def geomean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


_LIBC: Any = None


def _malloc_trim() -> None:
    """Return freed heap pages to the OS so the next RSS high-water mark starts low."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:
            _LIBC = False
    if _LIBC:
        try:
            _LIBC.malloc_trim(0)
        except AttributeError:
            pass


def steady_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds so freed blocks are reused, not returned.

    By default glibc serves large blocks with ``mmap`` and gives the top of the heap back
    after frees, so the same loop may pay page faults on one run and not on the next, which
    makes CPU timings depend on allocation history. With the thresholds raised (what a
    caching allocator such as jemalloc or PyTorch's CUDA allocator does anyway) every
    allocation still costs its bookkeeping and cache traffic but not a fresh page-in.
    Returns whether it took effect (glibc only).
    """
    global _LIBC
    if _LIBC is None:
        _malloc_trim()
    if not _LIBC:
        return False
    try:
        m_trim_threshold, m_mmap_threshold = -1, -3
        big = 1 << 30
        ok = _LIBC.mallopt(m_mmap_threshold, big) == 1
        return _LIBC.mallopt(m_trim_threshold, big) == 1 and ok
    except AttributeError:
        return False


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset the process's RSS high-water mark (Linux >= 4.0: ``clear_refs`` value 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory(fn: Callable[[], Any], device: torch.device) -> int | None:
    """Peak memory of one call of ``fn`` above the memory in use before it, in bytes.

    CUDA: ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before the call.
    CPU: the RSS high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) minus
    the RSS before the call, after a garbage collection and ``malloc_trim``; ``None`` where
    the high-water mark cannot be reset.
    """
    gc.collect()
    if device.type == "cuda":
        sync(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        sync(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del out
        return max(int(peak), 0)
    _malloc_trim()
    base = _status_kb("VmRSS")
    if base is None or not _reset_hwm():
        return None
    out = fn()
    hwm = _status_kb("VmHWM")
    del out
    if hwm is None:
        return None
    return max(hwm - base, 0) * 1024


def _time_block(fn: Callable[[], Any], number: int, config: Config) -> float:
    """Seconds per call of ``fn`` over ``number`` back-to-back calls (garbage collector off)."""
    device = config.device
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        sync(device)
        t0 = config.now()
        for _ in range(number):
            fn()
        sync(device)
        return (config.now() - t0) / number
    finally:
        if was_enabled:
            gc.enable()


def measure_rows(workload: Workload, config: Config, explicit: bool) -> list[Result]:
    """Results of a self-timing workload (``Workload.rows``); one skipped/error row on failure."""
    start = time.perf_counter()
    try:
        rows = workload.rows(config, explicit)  # type: ignore[misc]
    except Skip as exc:
        rows = [Result(workload.name, workload.group, workload.description, f"skipped: {exc}")]
    except ImportError as exc:
        rows = [Result(workload.name, workload.group, workload.description, f"skipped: {exc}")]
    except Exception as exc:
        rows = [
            Result(
                workload.name,
                workload.group,
                workload.description,
                f"error: {type(exc).__name__}: {exc}",
            )
        ]
    for r in rows:
        r.wall_s = (time.perf_counter() - start) / max(len(rows), 1)
    return rows


def measure(workload: Workload, config: Config, *, memory: bool = True) -> Result:
    """Build, warm up, check, time (interleaved best-of-N) and measure one workload."""
    res = Result(workload.name, workload.group, workload.description)
    start = time.perf_counter()
    try:
        torch.manual_seed(config.seed)
        case = workload.build(config)  # type: ignore[misc]
    except Skip as exc:
        res.status = f"skipped: {exc}"
        res.wall_s = time.perf_counter() - start
        return res
    except ImportError as exc:  # a piece (or an optional dependency) is not installed
        res.status = f"skipped: {type(exc).__name__}: {exc}"
        res.wall_s = time.perf_counter() - start
        return res
    try:
        _run_case(case, config, res, memory)
    except Exception as exc:  # report and keep going: one broken workload must not stop the suite
        res.status = f"error: {type(exc).__name__}: {exc}"
    res.wall_s = time.perf_counter() - start
    return res


def _run_case(case: Case, config: Config, res: Result, memory: bool) -> None:
    dev = config.device
    res.notes = case.notes
    if case.timer is not None:
        lib_s, floor_s = [], []
        for _ in range(config.warmup):
            case.timer("library")
            case.timer("floor")
        for r in range(min(config.repeats, 3)):  # subprocess timers are slow and steady
            order = ("library", "floor") if r % 2 == 0 else ("floor", "library")
            for which in order:
                (lib_s if which == "library" else floor_s).append(case.timer(which))
        res.number = 1
    else:
        # warm-up: first calls compile kernels, fill caches and give the outputs to check
        t_lib = t_floor = math.inf
        for i in range(max(config.warmup, 1)):
            sync(dev)
            t0 = config.now()
            out_lib = case.library()
            sync(dev)
            t1 = config.now()
            out_floor = case.floor()
            sync(dev)
            t2 = config.now()
            t_lib, t_floor = min(t_lib, t1 - t0), min(t_floor, t2 - t1)
            if i == 0 and case.check is not None:
                res.check = case.check(out_lib, out_floor)
            del out_lib, out_floor
        fastest = max(min(t_lib, t_floor), 1e-7)
        number = max(1, math.ceil(config.min_time / fastest))
        # as many samples as the budget allows: at least 3 (slow workloads), at most 3x the
        # requested repeats (short ones, whose best-of-N is the noisiest)
        affordable = int(config.budget / max((t_lib + t_floor) * number, 1e-9))
        repeats = max(min(3, config.repeats), min(3 * config.repeats, affordable))
        alts = dict(case.alt or {})
        for fn in alts.values():  # warm-up of the other floors
            fn()
        sides: dict[str, Callable[[], Any]] = {"library": case.library, "floor": case.floor}
        sides.update({f"alt:{k}": v for k, v in alts.items()})
        samples: dict[str, list[float]] = {k: [] for k in sides}
        order = list(sides)
        for r in range(repeats):  # rotate the order so that load changes hit every side
            for k in order[r % len(order) :] + order[: r % len(order)]:
                samples[k].append(_time_block(sides[k], number, config))
        lib_s, floor_s = samples["library"], samples["floor"]
        res.alt_s = {k[4:]: min(v) for k, v in samples.items() if k.startswith("alt:")}
        res.number = number
    res.repeats = len(lib_s)
    res.library_samples, res.floor_samples = lib_s, floor_s
    res.library_s, res.floor_s = min(lib_s), min(floor_s)
    res.ratio = res.library_s / res.floor_s
    if memory:
        if case.memory is not None:
            res.library_peak_bytes = case.memory("library")
            res.floor_peak_bytes = case.memory("floor")
        else:
            res.library_peak_bytes = peak_memory(case.library, dev)
            res.floor_peak_bytes = peak_memory(case.floor, dev)
    if res.alt_s:
        extra = ", ".join(f"lib / {k} {res.library_s / t:.2f}x" for k, t in res.alt_s.items())
        res.notes = f"{res.notes}; {extra}" if res.notes else extra
    if case.info is not None:
        extra = case.info()
        if extra:
            res.notes = f"{res.notes}; {extra}" if res.notes else extra


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None
