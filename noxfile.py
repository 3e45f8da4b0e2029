"""Cross-package CI for the TorchEBM workspace. Run with ``uvx nox`` (see README.md).

Sessions
--------
tests(piece)      a venv holding only that piece and its declared dependencies, then its tests
integration       everything together: tests/integration and tests/benchmarks_smoke, on the
                  oldest supported Python (3.10; nox's own where that is not installed)
integration_py(v) tests/integration on the newest supported Python (3.13; skipped, with one
                  line saying so, where it is not installed)
wheels            build every distribution with --no-sources, inspect, install each alone
readme_install    README's from-a-clone install commands, run verbatim in clean venvs
pins              every sibling range admits the sibling's workspace version
lowest(piece)     a piece at the floors it declares (torch kept at the locked version;
                  ``nox -s lowest -- --torch-floor`` lowers torch too, a multi-GB download)
torch_floor       torchebm-core, -flows and -samplers tests on the declared torch floor
api               each piece's public API against its committed snapshot (api/<piece>.json)
tools             unit tests of the CI tools (tests/tools)
lint              ruff check + ruff format --check
typecheck         mypy over every portion, and tests/typing (documented calls as a user types them)
examples          docs/**/*.md python blocks and examples/ scripts (plus the seed-documentation
                  corpus when $TORCHEBM_SEED_DOCS names it)
docs              mkdocs build --strict
affected          ``nox -s affected -- <base-ref>``: tests/lowest of the changed pieces and their
                  dependents, plus integration (not part of the default run)
bench             the benchmark suite (not part of the default run)

No session downloads a Python interpreter (``UV_PYTHON_DOWNLOADS=never``): a session that
needs one that is not installed is skipped with a one-line reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = False
nox.options.download_python = "never"
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")  # uv sync/venv must not fetch Python
nox.options.sessions = [
    "lint",
    "pins",
    "tools",
    "api",
    "tests",
    "integration",
    "integration_py",
    "wheels",
    "readme_install",
    "lowest",
    "torch_floor",
    "typecheck",
    "examples",
    "docs",
]

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT / "tools"))

import affected as affected_tool  # noqa: E402  (tools/affected.py)
from workspace import PIECES, portions_of, pyproject, sibling_deps, test_dirs_of  # noqa: E402

PYTHON = None  # the interpreter nox runs on: asking uv for another one would download it
THREADS = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
#: pytest-xdist workers per test session (one torch thread each). The CI machines have two
#: cores and most tests are small-tensor Python work, so two workers nearly halve the wall
#: time; ``TORCHEBM_TEST_WORKERS=1`` runs in one process.
WORKERS = int(os.environ.get("TORCHEBM_TEST_WORKERS") or min(2, os.cpu_count() or 1))


def _sync(session: nox.Session, *args: str) -> None:
    """``uv sync`` into the session's venv (exact: only what the arguments ask for)."""
    env = {"UV_PROJECT_ENVIRONMENT": session.virtualenv.location}
    session.run_install(
        "uv", "sync", "--locked", "--no-default-groups", *args, env=env, silent=True
    )


def _pytest(
    session: nox.Session,
    *paths: str,
    args: tuple[str, ...] = (),
    python: str = "python",
    posargs: list[str] | None = None,
) -> None:
    """pytest over ``paths``; every path must exist, and collecting no test fails (exit 5).

    ``posargs``: the session's arguments for pytest (default: all of ``session.posargs``).
    """
    missing = [p for p in paths if not (ROOT / p).exists()]
    if missing:
        session.error(f"test folders missing: {', '.join(missing)}")
    extra = [*args, *(session.posargs if posargs is None else posargs)]
    env = THREADS
    if WORKERS > 1:  # a file's tests stay on one worker (module-level fixtures, warnings)
        extra = ["-n", str(WORKERS), "--dist", "loadfile", *extra]
        env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    session.run(python, "-m", "pytest", "-q", *paths, *extra, env=env)


@nox.session(python=PYTHON)
@nox.parametrize("piece", list(PIECES), ids=list(PIECES))
def tests(session: nox.Session, piece: str) -> None:
    """Install ``piece`` and its declared dependencies only, then run its tests."""
    _sync(session, "--package", piece, "--group", "test")
    session.run("python", "tools/check_isolation.py", piece, env=THREADS)
    _pytest(session, *test_dirs_of(piece))


#: The oldest and newest Python the pieces support (``requires-python >=3.10``): the
#: integration sessions run on them; the other sessions run on nox's own interpreter.
OLDEST_PYTHON, NEWEST_PYTHON = "3.10", "3.13"


def _find_python(version: str) -> str | None:
    """An installed CPython ``version`` (PATH, pyenv, uv's own), never a download."""
    candidates = [shutil.which(f"python{version}")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob(f"{version}.*/bin/python{version}"))
    found = subprocess.run(
        ["uv", "python", "find", "--no-python-downloads", "--no-project", version],
        capture_output=True,
        text=True,
        check=False,
    )
    candidates.append(found.stdout.strip() if found.returncode == 0 else None)
    for exe in filter(None, candidates):
        probe = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return exe
    return None


def _sync_venv(session: nox.Session, name: str, exe: str, *args: str) -> str:
    """``uv sync`` into ``.nox/<name>`` on the interpreter ``exe``; returns its python."""
    venv = ROOT / ".nox" / name
    env = {"UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    session.run(
        "uv", "sync", "--locked", "--no-default-groups", "--python", exe, *args,
        env=env, silent=True,
    )  # fmt: skip
    return str(venv / "bin" / "python")


@nox.session(venv_backend="none")
def integration(session: nox.Session) -> None:
    """Everything installed together, on the oldest supported Python: namespace integrity,
    the meta, end-to-end training, the benchmark floors (``tests/benchmarks_smoke``) and
    every docstring example (``tools/run_doctests.py``).

    Where that Python is not installed, nox's own interpreter runs it (one line says so).
    """
    exe = _find_python(OLDEST_PYTHON)
    if exe is None:
        exe = sys.executable
        session.log(f"Python {OLDEST_PYTHON} is not installed here: integration runs on {exe}")
    # the bench group brings torchdiffeq, the peer the PF-ODE likelihood row is checked against
    python = _sync_venv(
        session, "integration-oldest", exe, "--all-packages", "--group", "test", "--group", "bench"
    )
    _pytest(session, "tests/integration", "tests/benchmarks_smoke", python=python)
    # every docstring example (>>>) of every piece, as the API reference shows it
    session.run(python, "tools/run_doctests.py", env=THREADS)


@nox.session(venv_backend="none")
@nox.parametrize("version", [NEWEST_PYTHON], ids=[NEWEST_PYTHON])
def integration_py(session: nox.Session, version: str) -> None:
    """tests/integration on the newest supported Python (skipped when it is not installed)."""
    exe = _find_python(version)
    if exe is None:
        session.skip(f"Python {version} is not installed here (PATH, pyenv, uv); not downloading")
    python = _sync_venv(
        session, f"integration_py-{version}", exe, "--all-packages", "--group", "test"
    )
    # the slow tests (samplers on the Triton interpreter, the doc runner's page subprocesses)
    # ran in `integration`; what differs between Pythons is covered by the rest
    _pytest(session, "tests/integration", args=("-m", "not slow"), python=python)


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
def readme_install(session: nox.Session) -> None:
    """README's install-from-a-clone commands, run verbatim in clean venvs, then imported."""
    session.install("packaging", "tomli")
    session.run("python", "tools/readme_install.py", *session.posargs, env=THREADS)


@nox.session(python=PYTHON)
def pins(session: nox.Session) -> None:
    """Sibling ranges admit the workspace versions; no bare sibling names."""
    session.install("packaging", "tomli")
    session.run("python", "tools/check_pins.py")


def _test_group() -> list[str]:
    """The root pyproject's ``test`` dependency group, as requirement strings."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    return [r for r in groups["test"] if isinstance(r, str)]


def _install_floors(session: nox.Session, piece: str, *, torch_floor: bool) -> None:
    """Install ``piece`` (and its siblings, editable) with its direct dependencies at floors."""
    session.install("packaging", "tomli")
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
        silent=True,
    )
    # the test group (pytest, hypothesis, numpy) at normal resolution: its floors are not
    # what is under test, and numpy's oldest allowed release has no wheel for new Pythons
    session.run_install("uv", "pip", "install", *_test_group(), silent=True)
    session.run("python", "tools/check_isolation.py", piece, env=THREADS)


def _lowerable(piece: str) -> list[str]:
    """Third-party direct dependencies of ``piece`` and its siblings other than torch."""
    todo, seen = [piece], []
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.append(p)
            todo += sibling_deps(p)
    names = (
        re.match(r"^[A-Za-z0-9_.-]+", raw).group(0)
        for p in seen
        for raw in pyproject(p)["project"].get("dependencies", [])
    )
    return sorted({n for n in names if n != "torch" and not n.startswith("torchebm")})


@nox.session(python=PYTHON)
@nox.parametrize("piece", list(PIECES), ids=list(PIECES))
def lowest(session: nox.Session, piece: str) -> None:
    """``piece`` with its direct dependencies at their declared floors (torch: the lock's)."""
    torch_floor = "--torch-floor" in session.posargs
    pytest_args = [a for a in session.posargs if a != "--torch-floor"]
    if not torch_floor and not _lowerable(piece):
        # siblings install from the workspace and torch stays at the lock: this venv would
        # be the one tests(piece) just ran, so running it again proves nothing new
        session.skip(
            f"{piece} needs nothing but torch and its siblings: with torch held at the lock "
            f"there is no floor to lower (tests({piece}) ran this environment; torch_floor "
            "and `-- --torch-floor` install torch's floor)"
        )
    _install_floors(session, piece, torch_floor=torch_floor)
    # the floors are what is under test: the slow statistical tests ran in tests(piece)
    _pytest(session, *test_dirs_of(piece), args=("-m", "not slow"), posargs=pytest_args)


#: The declared torch floor (``torch>=2.4``; models and losses need 2.5) and the newest
#: Python it has wheels for.
TORCH_FLOOR_PYTHON_MAX = (3, 12)


@nox.session(python=PYTHON)
def torch_floor(session: nox.Session) -> None:
    """torchebm-samplers (with core and flows) on the declared torch floor: their fast tests.

    The floor install is the PyPI build of torch 2.4 (a few GB the first time, from the uv
    cache afterwards); the statistical tests ran on the locked torch in tests(piece).
    """
    if sys.version_info[:2] > TORCH_FLOOR_PYTHON_MAX:
        session.skip(
            f"the torch floor has no wheel for Python {sys.version_info[0]}.{sys.version_info[1]}"
        )
    piece = "torchebm-samplers"
    _install_floors(session, piece, torch_floor=True)
    # torch 2.4's Inductor builds its C++ wrappers through setuptools (later torch releases
    # do not): sample(compile=True), whose alpha bug this session checks, needs it there
    session.run_install("uv", "pip", "install", "setuptools", silent=True)
    session.run("python", "-c", "import torch; print('torch', torch.__version__)")
    dirs = [d for p in ("torchebm-core", "torchebm-flows", piece) for d in test_dirs_of(p)]
    _pytest(session, *dirs, args=("-m", "not slow"))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # one docstring convention (Markdown maths and cross-references, no Sphinx roles)
    session.run("python", "tools/convert_docstrings.py", "--check")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy over every portion of every distribution."""
    _sync(session, "--all-packages", "--group", "typecheck")
    args = []
    for piece in PIECES:
        for portion in portions_of(piece):
            args += ["-p", f"torchebm.{portion}"]
    session.run("python", "-m", "mypy", *args)
    # what a user's checker sees on documented calls (assert_type on the public signatures)
    session.run("python", "-m", "mypy", "tests/typing")


@nox.session(python=PYTHON)
def tools(session: nox.Session) -> None:
    """Unit tests of the CI tools: the affected-pieces graph, the public-API comparison."""
    _sync(session, "--group", "api", "--group", "test")
    _pytest(session, "tests/tools")


@nox.session(python=PYTHON)
def api(session: nox.Session) -> None:
    """Each piece's public API against its snapshot api/<piece>.json (tools/api_snapshot.py)."""
    _sync(session, "--only-group", "api")
    session.run("python", "tools/api_snapshot.py", "--check", *session.posargs)


@nox.session(venv_backend="none", default=False)
def affected(session: nox.Session) -> None:
    """``nox -s affected -- <base-ref>``: only what a change touches, plus integration.

    Queues tests(piece) and lowest(piece) for every piece changed since the merge base
    with <base-ref> and every piece depending on it (tools/affected.py), then integration.
    ``-- <base-ref> --list`` only prints the affected pieces.
    """
    args = [a for a in session.posargs if a != "--list"]
    if len(args) != 1:
        session.error("usage: nox -s affected -- <base-ref> [--list]   (e.g. origin/main)")
    base = args[0]
    files = affected_tool.changed_files(base)
    pieces = affected_tool.affected_pieces(
        files, affected_tool.dependency_graph(), affected_tool.portion_owners(), PIECES
    )
    session.log(f"{len(files)} files changed since {base}; affected pieces: {pieces or 'none'}")
    if "--list" in session.posargs:  # say what would run, run nothing
        return
    for piece in pieces:
        session.notify(f"tests({piece})", posargs=[])
    for piece in pieces:
        session.notify(f"lowest({piece})", posargs=[])
    session.notify("integration", posargs=[])


@nox.session(python=PYTHON)
def examples(session: nox.Session) -> None:
    """Every python block of docs/**/*.md and every examples/ script.

    The seed-documentation corpus runs too when ``$TORCHEBM_SEED_DOCS`` (or
    ``-- --seed-docs FILE``) names it; otherwise the runner prints one line saying so.
    """
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
    katex_cached = any(
        Path(
            os.environ.get("TORCHEBM_DOCS_CACHE") or Path.home() / ".cache" / "torchebm-docs"
        ).glob("katex-*")
    )
    if not (shutil.which("npm") or os.environ.get("TORCHEBM_KATEX_TGZ") or katex_cached):
        session.skip(
            "the site bundles a pinned KaTeX fetched with `npm pack`: npm is not installed "
            "(install Node.js, or set TORCHEBM_KATEX_TGZ; see tools/mkdocs_katex.py)"
        )
    _sync(session, "--all-packages", "--group", "docs")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))
    # no raw Sphinx roles, no unrendered maths, no script from another host
    session.run("python", "tools/check_site_html.py", str(ROOT / "site"))


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
