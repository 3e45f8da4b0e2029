"""Run every docstring example (``>>>``) of the installed pieces as a doctest.

The API reference renders these examples; a researcher copies them. Each module of the
``torchebm.<x>`` portions the workspace's pieces own is imported under its real name (so
``issubclass`` and ``isinstance`` in an example see the library's own classes, not a second
copy of the module), and its examples run with ``ELLIPSIS`` in a temporary working folder
(an example that saves a file writes nothing into the checkout). An example that needs what
a docstring cannot set up (a process group, a GPU, a dataset) is marked
``# doctest: +SKIP``.

Usage: ``python tools/run_doctests.py [PIECE ...]`` (default: every piece). Prints one line
per failing example and a summary; exits 1 on any failure or a module that does not import.
"""

from __future__ import annotations

import argparse
import doctest
import importlib
import os
import pkgutil
import sys
import tempfile
from collections.abc import Iterator

from workspace import PIECES, portions_of

__all__ = ["main", "modules_of", "run_modules"]

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def modules_of(pieces: list[str]) -> Iterator[str]:
    """Dotted names of every module of the portions ``pieces`` own (not ``__main__``)."""
    for piece in pieces:
        for portion in portions_of(piece):
            name = f"torchebm.{portion}"
            yield name
            package = importlib.import_module(name)
            for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
                if not info.name.endswith(".__main__"):  # a command: importing it runs it
                    yield info.name


def run_modules(names: Iterator[str] | list[str]) -> tuple[int, int, list[str]]:
    """Run the doctests of the modules ``names`` in a temporary working folder.

    Returns ``(examples attempted, examples failed, modules that did not import)``; each
    failure is printed in doctest's format.
    """
    runner = doctest.DocTestRunner(optionflags=FLAGS, verbose=False)
    finder = doctest.DocTestFinder(exclude_empty=True)
    broken: list[str] = []
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            for name in names:
                try:
                    module = importlib.import_module(name)
                except Exception as exc:  # noqa: BLE001 - reported, and the run fails
                    broken.append(f"{name}: import failed: {type(exc).__name__}: {exc}")
                    continue
                for test in finder.find(module, name, module=module):
                    runner.run(test, out=sys.stdout.write)
        finally:
            os.chdir(cwd)
    return runner.tries, runner.failures, broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pieces", nargs="*", default=list(PIECES), help="default: all")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.pieces) - set(PIECES))
    if unknown:
        parser.error(f"unknown pieces {unknown}; choose from {sorted(PIECES)}")
    names = list(modules_of(args.pieces))
    attempted, failed, broken = run_modules(names)
    for line in broken:
        print(line)
    print(
        f"doctests: {attempted} examples in {len(names)} modules, {failed} failed, "
        f"{len(broken)} modules not importable"
    )
    return 1 if failed or broken or not attempted else 0


if __name__ == "__main__":
    sys.exit(main())
