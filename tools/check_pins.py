"""``nox -s pins``: every sibling requirement is a real range that admits the workspace version."""

from __future__ import annotations

import sys

from packaging.requirements import Requirement
from packaging.version import Version
from workspace import PIECES, sibling_requirements, version_of

versions = {p: Version(version_of(p)) for p in PIECES}
problems = []
for piece in PIECES:
    for raw in sibling_requirements(piece, include_optional=True):
        req = Requirement(raw)
        if req.name not in versions:
            problems.append(f"{piece}: requires unknown sibling {req.name}")
            continue
        specs = list(req.specifier)
        if not any(s.operator in (">=", ">", "~=", "==") for s in specs) or not any(
            s.operator in ("<", "<=", "~=", "==") for s in specs
        ):
            problems.append(f"{piece}: '{raw}' must carry a floor and a cap (e.g. >=0.1.0,<0.2)")
        if not req.specifier.contains(versions[req.name], prereleases=True):
            problems.append(
                f"{piece}: '{raw}' does not admit the workspace {req.name} {versions[req.name]}"
            )
        print(f"{piece:20s} -> {raw:45s} workspace {req.name}=={versions[req.name]}")
if problems:
    print("\n".join(["", "pins FAILED:"] + problems))
    sys.exit(1)
print("pins OK")
