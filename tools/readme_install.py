"""Run README.md's install-from-a-clone commands verbatim, each block in a clean venv, and import.

Usage::

    python tools/readme_install.py [--list] [NAME ...]

Called by ``nox -s readme_install``. A block of README.md is checked when the line just
before its ```` ```bash ```` fence is a marker::

    <!-- readme-install: NAME; imports: torchebm.core torchebm.samplers -->

For each marked block: a fresh virtual environment (``uv venv --seed``, so it has pip) is
created under ``.nox/readme_install/NAME``; PyTorch at the lock's version for this
interpreter is put in it first (from the uv cache, so that pip does not download the
multi-GB CUDA build again; README tells CPU-only users to do the same with the CPU
build); then the block's lines run, unchanged, in ``bash -e`` in the repository root with
that environment activated (``VIRTUAL_ENV`` and ``PATH``, so ``pip`` and ``uv pip`` both
install into it); finally every module named after ``imports:`` must import from that
environment's site-packages (not from the clone's source tree). Exits 1 when a block
fails, and when README.md holds no marked block; a NAME that no block has is an error
(exit 2), so that a typo never passes with nothing run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from lowest_requirements import locked_versions, tomllib
from workspace import ROOT

MARKER = re.compile(r"^<!--\s*readme-install:\s*([\w.-]+)\s*;\s*imports:\s*([\w. ]+?)\s*-->\s*$")
FENCE = re.compile(r"^```(bash|sh|console)?\s*$")


@dataclass
class Block:
    name: str
    imports: list[str]
    commands: list[str]
    line: int


def parse(text: str) -> list[Block]:
    """The marked blocks of ``text`` (a marker must sit right above a bash fence)."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if not m:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j >= len(lines) or not FENCE.match(lines[j].strip()):
            raise SystemExit(f"README.md:{i + 1}: readme-install marker not followed by ```bash")
        k = j + 1
        while k < len(lines) and lines[k].strip() != "```":
            k += 1
        commands = [c for c in lines[j + 1 : k] if c.strip() and not c.lstrip().startswith("#")]
        blocks.append(Block(m.group(1), m.group(2).split(), commands, i + 1))
    return blocks


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)


def run_block(block: Block, torch_pin: str) -> tuple[bool, str]:
    venv = ROOT / ".nox" / "readme_install" / block.name
    if venv.exists():
        shutil.rmtree(venv)
    steps = [
        ["uv", "venv", "--quiet", "--seed", "--python", sys.executable, str(venv)],
        ["uv", "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), torch_pin],
    ]
    for cmd in steps:
        done = _run(cmd)
        if done.returncode:
            return False, f"setup failed: {' '.join(cmd)}\n{done.stdout}{done.stderr}"
    # a user's shell: no nox session variables (nox points UV_PYTHON at its own venv)
    drop = ("PYTHONPATH", "UV_PROJECT_ENVIRONMENT", "UV_PYTHON", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    script = "set -ex\n" + "\n".join(block.commands) + "\n"
    done = _run(["bash", "-e", "-c", script], cwd=ROOT, env=env)
    log = done.stdout + done.stderr
    if done.returncode:
        return False, f"README commands failed (exit {done.returncode}):\n{log[-4000:]}"
    probe = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    mod = importlib.import_module(name)\n"
        "    where = getattr(mod, '__file__', None) or list(mod.__path__)[0]\n"
        "    assert where.startswith(sys.prefix), f'{name} imported from {where}'\n"
        "    print(name, where)\n"
    )
    done = _run([str(venv / "bin" / "python"), "-c", probe, *block.imports], cwd=venv, env=env)
    if done.returncode:
        return False, f"imports failed:\n{done.stdout}{done.stderr}"
    return True, done.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="run only these blocks")
    p.add_argument("--list", action="store_true", help="list the blocks, run nothing")
    args = p.parse_args(argv)
    blocks = parse((ROOT / "README.md").read_text(encoding="utf-8"))
    if not blocks:
        print("README.md has no readme-install block: nothing checks its install commands")
        return 1
    if args.names:
        known = [b.name for b in blocks]
        unknown = [n for n in args.names if n not in known]
        if unknown:
            p.error(f"no README block named {', '.join(unknown)}; the blocks are {known}")
        blocks = [b for b in blocks if b.name in args.names]
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    torch_pin = f"torch=={locked_versions(lock)['torch']}"
    failed = []
    for b in blocks:
        print(f"--- {b.name} (README.md line {b.line}): imports {' '.join(b.imports)}")
        for c in b.commands:
            print(f"    $ {c}")
        if args.list:
            continue
        t0 = time.perf_counter()
        ok, log = run_block(b, torch_pin)
        print(("PASS" if ok else "FAIL") + f"  {b.name}  {time.perf_counter() - t0:.0f}s")
        print("\n".join("    | " + ln for ln in log.strip().splitlines()[-30:]))
        if not ok:
            failed.append(b.name)
    n = len(blocks)
    print(
        f"README install blocks: {n - len(failed)}/{n} passed"
        + (f"; failed: {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
