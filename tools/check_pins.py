"""``nox -s pins``: every sibling requirement is a real range that admits the workspace version.

DESIGN section 2: a sibling dependency carries a real floor and a cap at the next breaking
release of that sibling, ``torchebm-core>=0.1.0,<0.2``: with the sibling at ``0.a.b`` the
cap is ``<0.(a+1)``, from 1.0 (``M.m.p``) it is ``<(M+1)``. A breaking minor of the sibling
therefore fails this check until its dependents widen their range in the same change (core
0.2.0: ``>=0.1.0,<0.3`` where a dependent works with both, else ``>=0.2.0,<0.3``). A wider
cap (``<1``, ``<=5``), a narrower one, a floor that is not ``>=`` (``>0``) or a pin (``==``)
is reported with the cap expected. `range_problems` is also what ``tools/check_wheels.py``
applies to each wheel's ``Requires-Dist``.
"""

from __future__ import annotations

import sys

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from workspace import PIECES, sibling_requirements, version_of

EXAMPLE = ">=0.1.0,<0.2"


def next_breaking(version: Version) -> Version:
    """The first release that may break ``version``'s API: a new minor for 0.x, else a new
    major."""
    major, minor = (version.release + (0,))[:2]
    return Version(f"0.{minor + 1}") if major == 0 else Version(f"{major + 1}")


def range_problems(specifier: SpecifierSet, current: Version) -> list[str]:
    """What keeps ``specifier`` from being ``>=FLOOR,<NEXT-BREAKING`` of the sibling at
    version ``current`` (empty when it is; that the range admits ``current`` is checked
    apart)."""
    specs = [s for s in specifier if s.operator != "!="]  # exclusions narrow nothing else
    floors = [s for s in specs if s.operator == ">="]
    caps = [s for s in specs if s.operator == "<"]
    others = sorted(str(s) for s in specs if s.operator not in (">=", "<"))
    if len(floors) != 1 or len(caps) != 1 or others:
        found = ",".join(str(s) for s in specs) or "no version range"
        return [f"must be one floor and one cap (e.g. {EXAMPLE}), found {found}"]
    want = next_breaking(current)
    if Version(caps[0].version) != want:
        return [
            f"cap <{caps[0].version} is not the next breaking release of the sibling at "
            f"{current}: expected <{want}"
        ]
    return []


def pin_problems() -> list[str]:
    """Every problem of the workspace's sibling requirements, one line each (printed as read)."""
    versions = {p: Version(version_of(p)) for p in PIECES}
    problems = []
    for piece in PIECES:
        for raw in sibling_requirements(piece, include_optional=True):
            req = Requirement(raw)
            if req.name not in versions:
                problems.append(f"{piece}: requires unknown sibling {req.name}")
                continue
            found = range_problems(req.specifier, versions[req.name])
            problems += [f"{piece}: '{raw}' {p}" for p in found]
            if not req.specifier.contains(versions[req.name], prereleases=True):
                problems.append(
                    f"{piece}: '{raw}' does not admit the workspace {req.name} {versions[req.name]}"
                )
            print(f"{piece:20s} -> {raw:45s} workspace {req.name}=={versions[req.name]}")
    return problems


def main() -> int:
    problems = pin_problems()
    if problems:
        print("\n".join(["", "pins FAILED:"] + problems))
        return 1
    print("pins OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
