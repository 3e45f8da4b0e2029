"""tools/workspace.py: its hard-coded PIECES are exactly the uv workspace's members."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import workspace  # noqa: E402


def _members() -> dict[str, str]:
    """member folder -> its project name, from the root pyproject's workspace globs."""
    config = workspace.tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]
    globs, exclude = config["workspace"]["members"], config["workspace"].get("exclude", [])
    folders = {p.parent for g in globs for p in ROOT.glob(f"{g}/pyproject.toml")}
    folders -= {p for g in exclude for p in ROOT.glob(g)}
    return {
        f.name: workspace.tomllib.loads((f / "pyproject.toml").read_text())["project"]["name"]
        for f in folders
    }


def test_the_pieces_are_the_workspace_members():
    members = _members()
    assert sorted(workspace.PIECES) == sorted(members), "PIECES and packages/* disagree"
    assert len(set(workspace.PIECES)) == len(workspace.PIECES)
    for folder, name in members.items():
        assert name == folder, f"packages/{folder} holds the project {name}"
