"""Cross-package CI for the TorchEBM workspace. Run with ``uvx nox`` (see README.md).

Sessions
--------
tests(piece)   a venv holding only that piece and its declared dependencies, then its tests
integration    everything together, tests/integration
wheels         build every distribution with --no-sources, inspect, install each alone
pins           every sibling range admits the sibling's workspace version
lowest         a piece at the floors it declares (torch kept at the locked version;
               ``nox -s lowest -- --torch-floor`` lowers torch too, a multi-GB download)
lint           ruff check + ruff format --check
typecheck      mypy over every portion
examples       every python block of the user docs and every examples/ script
docs           mkdocs build --strict
bench          the benchmark suite (not part of the default run)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = False
nox.options.sessions = [
    "lint",
    "pins",
    "tests",
    "integration",
    "wheels",
    "lowest",
    "typecheck",
    "examples",
    "docs",
]

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT / "tools"))

from workspace import PIECES, portions_of, test_dirs_of  # noqa: E402

PYTHON = None  # the interpreter nox runs on: asking uv for another one would download it
THREADS = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}


def _sync(session: nox.Session, *args: str) -> None:
    """``uv sync`` into the session's venv (exact: only what the arguments ask for)."""
    env = {"UV_PROJECT_ENVIRONMENT": session.virtualenv.location}
    session.run_install(
        "uv", "sync", "--locked", "--no-default-groups", *args, env=env, silent=True
    )


def _pytest(session: nox.Session, *paths: str, args: tuple[str, ...] = ()) -> None:
    extra = [*args, *(session.posargs or [])]
    existing = [p for p in paths if Path(p).exists()]
    if not existing:
        session.log(f"no tests under {paths}")
        return
    session.run(
        "python", "-m", "pytest", "-q", *existing, *extra, env=THREADS, success_codes=[0, 5]
    )


@nox.session(python=PYTHON)
@nox.parametrize("piece", list(PIECES), ids=list(PIECES))
def tests(session: nox.Session, piece: str) -> None:
    """Install ``piece`` and its declared dependencies only, then run its tests."""
    _sync(session, "--package", piece, "--group", "test")
    session.run("python", "tools/check_isolation.py", piece, env=THREADS)
    _pytest(session, *test_dirs_of(piece))


@nox.session(python=PYTHON)
def integration(session: nox.Session) -> None:
    """Everything installed together: namespace integrity, the meta, end-to-end training."""
    _sync(session, "--all-packages", "--group", "test")
    _pytest(session, "tests/integration")


@nox.session(python=PYTHON)
def wheels(session: nox.Session) -> None:
    """Build each distribution without workspace sources; inspect and install each alone."""
    dist = ROOT / "dist"
    if dist.exists():
        for f in dist.iterdir():
            f.unlink()
    session.run(
        "uv", "build", "--all-packages", "--no-sources", "-o", str(dist), silent=True, external=True
    )
    session.install("packaging")
    session.run("python", "tools/check_wheels.py", str(dist), env=THREADS)


@nox.session(python=PYTHON)
def pins(session: nox.Session) -> None:
    """Sibling ranges admit the workspace versions; no bare sibling names."""
    session.install("packaging", "tomli")
    session.run("python", "tools/check_pins.py")


@nox.session(python=PYTHON)
@nox.parametrize("piece", list(PIECES), ids=list(PIECES))
def lowest(session: nox.Session, piece: str) -> None:
    """``piece`` with its direct dependencies at their declared floors."""
    session.install("packaging", "tomli")
    torch_floor = "--torch-floor" in session.posargs
    reqs = session.run(
        "python",
        "tools/lowest_requirements.py",
        piece,
        *(["--torch-floor"] if torch_floor else []),
        silent=True,
    )
    lines = [line for line in str(reqs).splitlines() if line.strip()]
    session.run_install(
        "uv",
        "pip",
        "install",
        "--resolution",
        "lowest-direct",
        *lines,
        "pytest>=8.0",
        "hypothesis>=6.100",
        silent=True,
    )
    session.run("python", "tools/check_isolation.py", piece, env=THREADS)
    # the floors are what is under test: the slow statistical tests ran in tests(piece)
    _pytest(session, *test_dirs_of(piece), args=("-m", "not slow"))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy over every portion of every distribution."""
    _sync(session, "--all-packages", "--group", "typecheck")
    args = []
    for piece in PIECES:
        for portion in portions_of(piece):
            args += ["-p", f"torchebm.{portion}"]
    session.run("python", "-m", "mypy", *args)


@nox.session(python=PYTHON)
def examples(session: nox.Session) -> None:
    """Run every python block of the user documentation and every examples/ script."""
    _sync(session, "--all-packages", "--group", "test")
    session.run(
        "python",
        "tools/run_doc_examples.py",
        *session.posargs,
        env={**THREADS, "MPLBACKEND": "Agg", "TORCHEBM_SMOKE": "1"},
    )


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site with --strict."""
    _sync(session, "--all-packages", "--group", "docs")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """The benchmark suite: every hot path beside its hand-written floor."""
    _sync(session, "--all-packages", "--group", "test", "--group", "bench")
    session.run(
        "python",
        "benchmarks/run.py",
        *session.posargs,
        env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")},
    )
