"""Print install arguments for ``nox -s lowest``: the piece and its siblings from local paths,
every third-party direct dependency at its floor, torch kept at the locked version unless
``--torch-floor``."""

from __future__ import annotations

import sys

from packaging.requirements import Requirement
from workspace import PACKAGES, ROOT, pyproject, sibling_deps

try:
    import tomllib
except ModuleNotFoundError:
    import tomli as tomllib  # type: ignore[no-redef]

piece = sys.argv[1]
torch_floor = "--torch-floor" in sys.argv

todo, seen = [piece], []
while todo:
    p = todo.pop()
    if p in seen:
        continue
    seen.append(p)
    todo += sibling_deps(p)

lock = tomllib.loads((ROOT / "uv.lock").read_text())
locked = {pkg["name"]: pkg["version"] for pkg in lock["package"]}
for p in seen:
    print(f"-e{PACKAGES / p}")
    for raw in pyproject(p)["project"].get("dependencies", []):
        req = Requirement(raw)
        if req.name.startswith("torchebm"):
            continue
        if req.name == "torch" and not torch_floor:
            print(f"torch=={locked['torch']}")
            continue
        floor = next((s.version for s in req.specifier if s.operator in (">=", "==", "~=")), None)
        print(f"{req.name}=={floor}" if floor else req.name)
