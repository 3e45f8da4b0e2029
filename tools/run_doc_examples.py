#!/usr/bin/env python
"""Run every ```python block of the project's documentation, then every examples/ script.

A python block is a fenced block (```, ~~~ or longer fences) whose language is ``python``,
``py`` or ``python3``, attributes after it allowed (```` ```python title="x.py" ````).

Called by ``nox -s examples`` (which sets ``MPLBACKEND=Agg`` and ``TORCHEBM_SMOKE=1``).
Prints one line per block and per script and ends with ``N passed, M failed``
(``, K skipped`` when some were skipped); exits 1 when anything failed or nothing ran.

Usage::

    python tools/run_doc_examples.py [--seed-docs PATH] [--only TEXT] [--epochs N]
                                     [--timeout S] [--seed S] [--repeat N] [--jobs N] [--list]
                                     [--no-docs] [--no-site] [--no-scripts] [--script PATH]
                                     [--no-preload] [-v]

What runs:

* always: the python blocks of this repository's own pages, ``docs/**/*.md`` (each file
  is one page), and every ``examples/**/*.py`` whose name does not start with ``_``;
* in addition, only when its path is given: the seed-documentation corpus (the user's
  original documentation, one text file), by ``--seed-docs PATH`` or the environment
  variable ``TORCHEBM_SEED_DOCS=PATH``. Without either, the runner prints one line saying
  the corpus was skipped; a path that is given but does not exist is an error.

How the blocks are run (the rules; the block text itself is never edited):

1. **Pages.** A page is everything under one level-1 heading (``# Title``, outside code
   fences) of the corpus, or one file of ``docs/``. Each page runs in a process of its
   own (see the end of this docstring), in a fresh temporary working directory, and its
   blocks run in document order in ONE namespace: a block may use names defined by the
   blocks before it on the same page. Nothing is carried from one page to the next.
2. **Helpers shown after their first use.** A block made only of imports and
   ``def``/``class`` statements (it defines helpers and does nothing else) is also run
   once at the start of its page, so that a helper the docs show after its first use is
   defined when it is called. It still runs, and is counted, in its own place. An error
   in this early run is ignored; the in-place run decides.
3. **Epochs only.** With ``TORCHEBM_SMOKE=1`` (or ``--epochs N``), training loops are cut
   short by their number of epochs and by nothing else: a loop header
   ``for <name containing "epoch"> in range(<expr>):`` runs ``range(min(<expr>, N))``
   (N = 2 by default under ``TORCHEBM_SMOKE``). Sampling lengths, batch sizes, datasets
   and models are as written.
4. **Files.** Relative directories that a block's ``savefig("dir/.../file.png")`` string
   literal writes into are created in the page's temporary directory first.
5. **Context the docs leave out.** A few blocks of the corpus use names that no earlier
   block of their page defines. For exactly those, ``CONTEXT`` below holds a short
   snippet that runs just before the block, in the page namespace, and the runner prints
   it. Each entry says why.
6. **Requirements and launchers.** ``REQUIRES`` lists blocks that need hardware (CUDA);
   without it they are reported as skipped, not passed. ``SKIP_PAGES`` lists the
   ``docs/`` pages whose snippets only run under a multi-process launcher, with the test
   that runs the same code; a block preceded by ``<!-- doc-examples: skip REASON -->``
   is skipped likewise. Skips are printed and counted, never passed.
7. **Randomness.** The docs draw from the global RNGs without seeding them, and no seed
   is picked for them: every page starts with ``random``, ``numpy`` and ``torch`` seeded
   from fresh OS entropy, a different draw on every run. A failing page prints its seed,
   so that ``--seed S --only PAGE`` replays it; ``--repeat N`` runs the pages N times.

Scripts run in their own subprocess and temporary directory with ``TORCHEBM_SMOKE=1``
(scripts shorten themselves when it is set).

Where the platform has it (Linux, macOS), each page and script process is forked from a
``multiprocessing`` forkserver that has imported ``torch`` (with ``torch._dynamo``, which a
first optimizer constructs), ``numpy``, ``matplotlib.pyplot`` and ``torchebm`` once and run
nothing: a child starts from that untouched interpreter state instead of paying those
imports (about 4-10 s a process on the CI machines), and is otherwise what a fresh
``python`` is (its own working directory, globals, RNG seeds, warning registries).
Elsewhere, or with ``--no-preload``, every page and script is a fresh ``python``.

``--jobs N`` (default: two where there are two CPUs) runs that many pages/scripts side by
side, splitting ``$OMP_NUM_THREADS`` between them; results are printed in the listed order.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import multiprocessing
import os
import re
import runpy
import secrets
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: Environment variable naming the seed-documentation corpus (see the docstring).
SEED_DOCS_ENV = "TORCHEBM_SEED_DOCS"
#: ``docs/`` pages whose python blocks only run under a launcher (rule 6), with the reason.
SKIP_PAGES: dict[str, str] = {
    "docs/distributed.md": "runs under torchrun (several processes); "
    "tests/core/test_distributed.py runs the same code on 2 gloo processes",
}
_SKIP_MARK = re.compile(r"^\s*<!--\s*doc-examples:\s*skip\b\s*(.*?)\s*-->\s*$")
SMOKE_EPOCHS = 2

# (section heading, text the block contains) -> (why, code run just before the block)
CONTEXT: dict[tuple[str, str], tuple[str, str]] = {
    ("Integration with Loss Functions", "loss_fn = ContrastiveDivergence("): (
        "`optimizer` and `data_batch` are used but no earlier block of the page defines "
        "them; the block trains the network that `langevin_sampler` samples (defined under "
        "'Basic Usage'), whereas the HMC section just before rebinds `model` to an analytic "
        "DoubleWellModel, which has no parameters to train.",
        "model = langevin_sampler.model\n"
        "optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)\n"
        "data_batch = torch.randn(128, 2, device=device)\n",
    ),
    ("Key Components", 'self.register_scheduler("step_size"'): (
        "an excerpt of a sampler method body (indented in a list): `self` is an instance of "
        "the custom sampler class defined above, and `ConstantScheduler` (used by that class "
        "and by the excerpt) is never imported on the page.",
        "from torchebm.core import ConstantScheduler, DoubleWellModel\n"
        "self = MyCustomSampler(model=DoubleWellModel())\n",
    ),
    ("Key Components", 'my_sampler = my_sampler.to("cuda:0")'): (
        "an excerpt (indented in a list): `my_sampler` is an instance of the custom sampler "
        "class defined above.",
        "from torchebm.core import DoubleWellModel\n"
        "my_sampler = MyCustomSampler(model=DoubleWellModel())\n",
    ),
}

# (section heading, text the block contains) -> requirement
REQUIRES: dict[tuple[str, str], str] = {
    ("Key Components", 'my_sampler = my_sampler.to("cuda:0")'): "cuda",
}


@dataclass
class Block:
    page: str
    section: str
    line: int
    code: str
    indented: bool = False
    hoist: bool = False
    context: str = ""
    context_why: str = ""
    requires: str = ""
    skip: str = ""

    @property
    def label(self) -> str:
        where = self.page if self.section == self.page else f"{self.page} > {self.section}"
        return f"{where} (line {self.line})"


@dataclass
class Result:
    label: str
    status: str  # "passed" | "failed" | "skipped"
    seconds: float = 0.0
    detail: str = ""
    output: str = ""
    context: str = field(default="")


# --------------------------------------------------------------------------- parsing
#: A code fence: three or more backticks (no backtick in the info string) or tildes, then
#: the info string (a language, maybe followed by attributes: ``python title="x.py"``).
_FENCE_OPEN = re.compile(r"^(\s*)(`{3,}(?=[^`]*$)|~{3,})\s*(.*?)\s*$")
_FENCE_CLOSE = re.compile(r"^\s*(`{3,}|~{3,})\s*$")
#: Info-string languages whose blocks run (``pycon`` blocks hold prompts: not run).
PYTHON_LANGUAGES = frozenset({"python", "py", "python3"})
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _fence_language(info: str) -> str:
    """The language of a fence's info string: its first word, lower-cased, without the
    braces and dot of the attribute form (``python title="x.py"`` and ``{.py}``: python, py)."""
    words = info.split(maxsplit=1)
    return words[0].strip("{}").lstrip(".").lower() if words else ""


def _closes(line: str, fence: str) -> bool:
    """``line`` closes a block opened by ``fence``: the same character, at least as many."""
    m = _FENCE_CLOSE.match(line)
    return bool(m) and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence)


def _clean_heading(text: str) -> str:
    return re.sub(r"[*_`]", "", text).strip()


def parse_blocks(text: str) -> list[Block]:
    """Every fenced python block (``python``, ``py`` or ``python3``, with or without
    attributes after the language, between ``` or ~~~ fences of any length) with its page
    (level-1 heading) and nearest heading."""
    blocks: list[Block] = []
    page = section = "(top)"
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _FENCE_OPEN.match(line)
        if m:
            indent, fence, lang = m.group(1), m.group(2), _fence_language(m.group(3))
            start = i + 1
            j = start
            while j < len(lines) and not _closes(lines[j], fence):
                j += 1
            body = lines[start:j]
            if lang in PYTHON_LANGUAGES:
                n = len(indent)
                code = "\n".join(b[n:] if b[:n].strip() == "" else b for b in body)
                prev = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
                mark = _SKIP_MARK.match(prev)
                blocks.append(
                    Block(
                        page=page,
                        section=section,
                        line=i + 1,
                        code=code + "\n",
                        indented=n > 0,
                        skip=(mark.group(1) or "marked skip") if mark else "",
                    )
                )
            i = j + 1
            continue
        h = _HEADING.match(line)
        if h:
            title = _clean_heading(h.group(2))
            if len(h.group(1)) == 1:
                page = title
            section = title
        i += 1
    for b in blocks:
        b.hoist = is_definition_only(b.code)
        for (sec, needle), (why, code) in CONTEXT.items():
            if b.section == sec and needle in b.code:
                b.context, b.context_why = code, why
        for (sec, needle), req in REQUIRES.items():
            if b.section == sec and needle in b.code:
                b.requires = req
    return blocks


def is_definition_only(code: str) -> bool:
    """True when the block only imports and defines functions/classes (and has at least one)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    allowed = (ast.Import, ast.ImportFrom, *defs)
    body = [
        n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
    ]
    return (
        bool(body)
        and all(isinstance(n, allowed) for n in body)
        and any(isinstance(n, defs) for n in body)
    )


_EPOCH_LOOP = re.compile(r"^(\s*for\s+(\w*epoch\w*)\s+in\s+range\()(.+)(\)\s*:\s*(#.*)?)$", re.I)


def cut_epochs(code: str, epochs: int | None) -> tuple[str, int]:
    """Rewrite ``for <..epoch..> in range(<expr>):`` to ``range(min(<expr>, epochs))``."""
    if epochs is None:
        return code, 0
    out, n = [], 0
    for line in code.splitlines():
        m = _EPOCH_LOOP.match(line)
        if m and "," not in m.group(3):
            line = f"{m.group(1)}min({m.group(3)}, {epochs}){m.group(4)}"
            n += 1
        out.append(line)
    return "\n".join(out) + "\n", n


_SAVEFIG = re.compile(r"""savefig\(\s*f?(['"])([^'"]+)\1""")


def output_dirs(code: str) -> list[str]:
    """Relative parent directories of the ``savefig("...")`` paths of a block."""
    dirs = []
    for m in _SAVEFIG.finditer(code):
        parent = os.path.dirname(m.group(2))
        if parent and not os.path.isabs(parent) and "{" not in parent and ".." not in parent:
            dirs.append(parent)
    return dirs


# --------------------------------------------------------------------------- child side
def _exec(code: str, ns: dict, filename: str) -> None:
    exec(compile(code, filename, "exec"), ns)


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:
        pass
    import torch

    torch.manual_seed(seed)


def run_page_child(job_file: str) -> int:
    """Executed in the page subprocess: run the blocks, append one JSON line per result."""
    job = json.loads(Path(job_file).read_text())
    out_path = Path(job["results"])
    ns: dict = {"__name__": "__main__"}
    _seed_everything(job["seed"])
    cuda = None

    def has(req: str) -> bool:
        nonlocal cuda
        if req == "cuda":
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            return cuda
        return False

    for b in job["blocks"]:
        if b["hoist"]:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                try:
                    _exec(b["code"], ns, f"<doc line {b['line']} (early)>")
                except BaseException:  # noqa: BLE001 - the in-place run reports it
                    pass
    for b in job["blocks"]:
        label = b["label"]
        if b["skip"]:
            rec = Result(label, "skipped", detail=b["skip"])
        elif b["requires"] and not has(b["requires"]):
            rec = Result(label, "skipped", detail=f"needs {b['requires']}")
        else:
            buf = io.StringIO()
            t0 = time.perf_counter()
            try:
                with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                    if b["context"]:
                        _exec(b["context"], ns, f"<context for doc line {b['line']}>")
                    _exec(b["code"], ns, f"<doc line {b['line']}>")
                rec = Result(label, "passed", time.perf_counter() - t0, output=buf.getvalue())
            except BaseException as exc:  # noqa: BLE001 - report everything, keep going
                tb = traceback.format_exc()
                rec = Result(
                    label,
                    "failed",
                    time.perf_counter() - t0,
                    detail=f"{type(exc).__name__}: {exc}",
                    output=buf.getvalue() + tb,
                )
            try:
                import matplotlib.pyplot as plt

                plt.close("all")
            except Exception:  # noqa: BLE001
                pass
        with out_path.open("a") as f:
            f.write(json.dumps(asdict(rec)) + "\n")
    return 0


# --------------------------------------------------------------------------- parent side
def find_seed_docs(explicit: str | None) -> Path | None:
    """The seed-documentation corpus: ``--seed-docs PATH``, else ``$TORCHEBM_SEED_DOCS``.

    Returns None when neither is given; raises SystemExit when a given path is no file.
    """
    given = explicit or os.environ.get(SEED_DOCS_ENV) or None
    if given is None:
        return None
    path = Path(given)
    if not path.is_file():
        raise SystemExit(f"run_doc_examples: seed-documentation corpus {given!r} is not a file")
    return path


def site_blocks() -> list[Block]:
    """The python blocks of ``docs/**/*.md``, one page per file, with ``SKIP_PAGES`` applied."""
    blocks: list[Block] = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        rel = page.relative_to(ROOT).as_posix()
        for b in parse_blocks(page.read_text(encoding="utf-8")):
            b.page = rel
            if rel in SKIP_PAGES and not b.skip:
                b.skip = SKIP_PAGES[rel]
            blocks.append(b)
    return blocks


#: How many pages/scripts run side by side (``--jobs``); their torch threads share the CPUs.
_JOBS = 1


def _child_threads(jobs: int) -> int:
    """Torch threads per page subprocess when ``jobs`` of them run side by side."""
    try:
        total = int(os.environ.get("OMP_NUM_THREADS", "")) or (os.cpu_count() or 1)
    except ValueError:
        total = os.cpu_count() or 1
    return max(1, total // max(1, jobs))


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("PYTHONWARNINGS", "default")
    if _JOBS > 1:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(_child_threads(_JOBS))
    return env


#: What the forkserver imports before forking any page or script (missing ones are skipped).
PRELOAD = ("torch", "torch._dynamo", "numpy", "matplotlib.pyplot", "torchebm")
_FORKSERVER: Any = None  # the multiprocessing context, once main() has started it


def _start_forkserver() -> Any:
    """A forkserver context that has imported ``PRELOAD`` (None where there is none).

    The server inherits this process's environment as it is now, so that ``_child_env``
    (thread counts, the Agg backend, warnings) is applied before it imports torch.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    os.environ.update(_child_env())
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", *PRELOAD])
    return ctx


def _forked_child(kind: str, target: str, cwd: str, log: str, env: dict[str, str]) -> None:
    """Body of a forked page/script process: its directory, output file and environment,
    then the page runner or the script as ``__main__`` (its exit status is the process's)."""
    os.chdir(cwd)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    if kind == "page":
        sys.argv = [str(Path(__file__).resolve())]
        raise SystemExit(run_page_child(target))
    sys.argv = [target]
    sys.path.insert(0, str(Path(target).parent))
    runpy.run_path(target, run_name="__main__")


def _run_child(
    kind: str, target: str, cwd: str, env: dict[str, str], timeout: float
) -> tuple[int | None, str]:
    """Run a page (``kind="page"``, ``target`` its job file) or a script in ``cwd``.

    Returns ``(exit status, output)``; the status is None when ``timeout`` ran out.
    """
    if _FORKSERVER is None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_run-page", target]
        if kind != "page":
            cmd = [sys.executable, target]
        try:
            proc = subprocess.run(
                cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            return None, str(exc)
        return proc.returncode, proc.stdout + proc.stderr
    log = Path(cwd) / ".output.log"
    child = _FORKSERVER.Process(target=_forked_child, args=(kind, target, cwd, str(log), env))
    child.start()
    child.join(timeout)
    if child.exitcode is None:
        child.kill()
        child.join()
        return None, f"timed out after {timeout:.0f}s"
    text = log.read_text(errors="replace") if log.exists() else ""
    return child.exitcode, text


def run_page(
    page: str, blocks: list[Block], timeout: float, verbose: bool, seed: int
) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="torchebm-doc-") as tmp:
        for b in blocks:
            for d in output_dirs(b.code):
                (Path(tmp) / d).mkdir(parents=True, exist_ok=True)
        results_file = Path(tmp) / ".results.jsonl"
        job = {
            "results": str(results_file),
            "seed": seed,
            "blocks": [dict(asdict(b), label=b.label) for b in blocks],
        }
        job_file = Path(tmp) / ".job.json"
        job_file.write_text(json.dumps(job))
        status, output = _run_child("page", str(job_file), tmp, _child_env(), timeout)
        timed_out, crash = status is None, status != 0
        tail = output[-3000:]
        done = []
        if results_file.exists():
            done = [Result(**json.loads(ln)) for ln in results_file.read_text().splitlines() if ln]
        for b in blocks[len(done) :]:
            why = f"page timed out after {timeout:.0f}s" if timed_out else "page process crashed"
            done.append(Result(b.label, "failed", detail=why, output=tail if crash else ""))
        for b, r in zip(blocks, done):
            r.context = b.context_why
            if r.status == "failed":
                r.detail += f"; page seed {seed}: replay with --seed {seed} --only {page!r}"
        return done


def run_script(path: Path, timeout: float) -> Result:
    examples = ROOT / "examples"
    label = f"examples/{path.relative_to(examples)}" if path.is_relative_to(examples) else path.name
    env = _child_env()
    env["TORCHEBM_SMOKE"] = "1"
    with tempfile.TemporaryDirectory(prefix="torchebm-example-") as tmp:
        t0 = time.perf_counter()
        status, out = _run_child("script", str(path), tmp, env, timeout)
        dt = time.perf_counter() - t0
        if status is None:
            return Result(label, "failed", timeout, detail=f"timed out after {timeout:.0f}s")
        if status != 0:
            last = [ln for ln in out.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
            return Result(label, "failed", dt, detail=last[0], output=out)
        return Result(label, "passed", dt, output=out)


def _print_result(r: Result, verbose: bool) -> None:
    tag = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[r.status]
    extra = f"  ({r.detail})" if r.detail else ""
    print(f"{tag}  {r.label}  {r.seconds:.1f}s{extra}", flush=True)
    if r.context and (verbose or r.status != "passed"):
        print(f"      context: {r.context}")
    if r.status == "failed" or verbose:
        body = r.output.strip()
        if body:
            lines = body.splitlines()
            shown = lines if verbose else lines[-25:]
            print("\n".join("      | " + ln for ln in shown), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--seed-docs",
        "--spec",
        dest="spec",
        help=f"the seed-documentation corpus to run as well (default: ${SEED_DOCS_ENV})",
    )
    p.add_argument("--only", help="run only the pages/scripts with a label containing this text")
    p.add_argument(
        "--epochs", type=int, help="cut epoch loops to N (default: 2 under TORCHEBM_SMOKE)"
    )
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per page/script")
    p.add_argument(
        "--seed",
        type=int,
        help="seed of the global RNGs at each page start (default: fresh OS entropy per page)",
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="run the documentation pages N times (fresh seeds)"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="pages/scripts run side by side (default: min(2, CPUs)); torch threads are split",
    )
    p.add_argument("--list", action="store_true", help="list the blocks and scripts, run nothing")
    p.add_argument("--no-scripts", action="store_true", help="skip examples/ scripts")
    p.add_argument(
        "--script",
        action="append",
        type=Path,
        help="run this script instead of examples/ (repeatable)",
    )
    p.add_argument("--no-docs", action="store_true", help="skip the documentation blocks")
    p.add_argument("--no-site", action="store_true", help="skip the docs/ site pages")
    p.add_argument("-v", "--verbose", action="store_true", help="print every block's output")
    p.add_argument(
        "--no-preload",
        action="store_true",
        help="start every page/script as a fresh python (default: fork them from a "
        "forkserver that has imported torch and torchebm once)",
    )
    p.add_argument("--_run-page", dest="run_page", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_page:
        return run_page_child(args.run_page)
    if args.jobs < 1:
        p.error(f"--jobs must be a positive integer, got {args.jobs}")
    global _JOBS
    _JOBS = args.jobs

    epochs = args.epochs
    if epochs is None and os.environ.get("TORCHEBM_SMOKE", "") not in ("", "0"):
        epochs = SMOKE_EPOCHS

    blocks: list[Block] = []
    if not args.no_docs:
        spec = find_seed_docs(args.spec)
        if spec is None:
            print(
                "seed-documentation corpus: skipped (not given; set "
                f"{SEED_DOCS_ENV}=<file> or pass --seed-docs <file> to run it too)"
            )
        else:
            blocks = parse_blocks(spec.read_text(encoding="utf-8"))
            print(f"seed-documentation corpus: {spec} ({len(blocks)} python blocks)")
        if not args.no_site:
            site = site_blocks()
            blocks += site
            print(f"docs/ pages: {len({b.page for b in site})} files ({len(site)} python blocks)")
        for b in blocks:
            b.code, n = cut_epochs(b.code, epochs)
        if epochs is not None:
            print(f"epoch loops cut to at most {epochs} epochs (TORCHEBM_SMOKE / --epochs)")
        if args.only:  # whole pages: a block may need the blocks before it on its page
            keep = {b.page for b in blocks if args.only in b.label}
            blocks = [b for b in blocks if b.page in keep]
    scripts: list[Path] = []
    if args.script:
        scripts = [s.resolve() for s in args.script]
    elif not args.no_scripts and (ROOT / "examples").is_dir():
        scripts = sorted(p for p in (ROOT / "examples").rglob("*.py") if not p.name.startswith("_"))
        if args.only:
            scripts = [s for s in scripts if args.only in str(s.relative_to(ROOT))]

    if args.list:
        for b in blocks:
            flags = [
                f
                for f, on in (
                    ("hoisted", b.hoist),
                    ("context", bool(b.context)),
                    ("excerpt", b.indented),
                    (f"needs {b.requires}", bool(b.requires)),
                    (f"skipped: {b.skip}", bool(b.skip)),
                )
                if on
            ]
            print(f"{b.label}" + (f"  [{', '.join(flags)}]" if flags else ""))
        for s in scripts:
            print(f"examples/{s.relative_to(ROOT / 'examples')}")
        return 0

    results: list[Result] = []
    pages: dict[str, list[Block]] = {}
    for b in blocks:
        pages.setdefault(b.page, []).append(b)
    t_start = time.perf_counter()
    jobs: list[Callable[[], list[Result]]] = []
    for _ in range(max(1, args.repeat)):
        for page, page_blocks in pages.items():
            seed = args.seed if args.seed is not None else secrets.randbits(31)
            jobs.append(partial(run_page, page, page_blocks, args.timeout, args.verbose, seed))
    jobs += [partial(lambda s: [run_script(s, args.timeout)], s) for s in scripts]
    if args.jobs > 1:
        print(f"{args.jobs} pages/scripts at a time, {_child_threads(args.jobs)} thread(s) each")
    # every page and script is its own subprocess: run --jobs of them side by side and
    # print their results in the order they were listed
    global _FORKSERVER
    _FORKSERVER = None if args.no_preload else _start_forkserver()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for rs in pool.map(lambda job: job(), jobs):
            for r in rs:
                _print_result(r, args.verbose)
                results.append(r)

    n_pass = sum(r.status == "passed" for r in results)
    n_fail = sum(r.status == "failed" for r in results)
    n_skip = sum(r.status == "skipped" for r in results)
    doc, ran = results[: len(results) - len(scripts)], results[len(results) - len(scripts) :]
    print(
        f"documentation blocks: {sum(r.status == 'passed' for r in doc)}/{len(doc)} passed; "
        f"{'scripts' if args.script else 'examples/ scripts'}: "
        f"{sum(r.status == 'passed' for r in ran)}/{len(ran)} passed; "
        f"{time.perf_counter() - t_start:.0f}s"
    )
    summary = f"{n_pass} passed, {n_fail} failed"
    if n_skip:
        summary += f", {n_skip} skipped"
    print(summary)
    if not results:
        print("run_doc_examples: nothing ran")
        return 1
    return 1 if n_fail else 0


if __name__ == "__main__":
    raise SystemExit(main())
