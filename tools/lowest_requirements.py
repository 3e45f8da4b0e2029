"""Print install arguments for ``nox -s lowest``: the piece and its siblings from local paths,
every third-party direct dependency at its floor, torch kept at the locked version unless
``--torch-floor``."""

from __future__ import annotations

import sys

from packaging.markers import Marker
from packaging.requirements import Requirement
from workspace import PACKAGES, ROOT, pyproject, sibling_deps

try:
    import tomllib
except ModuleNotFoundError:
    import tomli as tomllib  # type: ignore[no-redef]


def locked_versions(lock: dict, environment: dict[str, str] | None = None) -> dict[str, str]:
    """name -> locked version for the running interpreter.

    A universal lock can hold several entries of one package, each for the environments
    its ``resolution-markers`` describe (torch: one for Python 3.10, one for 3.11+); the
    entry whose markers match this interpreter (or ``environment``) is the one it installs.
    """
    out: dict[str, str] = {}
    for pkg in lock["package"]:
        markers = pkg.get("resolution-markers")
        if markers and not any(Marker(m).evaluate(environment) for m in markers):
            continue
        out.setdefault(pkg["name"], pkg["version"])
    return out


def main(argv: list[str]) -> None:
    piece = argv[0]
    torch_floor = "--torch-floor" in argv

    todo, seen = [piece], []
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += sibling_deps(p)

    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = locked_versions(lock)
    for p in seen:
        print(f"-e{PACKAGES / p}")
        for raw in pyproject(p)["project"].get("dependencies", []):
            req = Requirement(raw)
            if req.name.startswith("torchebm"):
                continue
            if req.name == "torch" and not torch_floor:
                print(f"torch=={locked['torch']}")
                continue
            floor = next(
                (s.version for s in req.specifier if s.operator in (">=", "==", "~=")), None
            )
            print(f"{req.name}=={floor}" if floor else req.name)


if __name__ == "__main__":
    main(sys.argv[1:])
