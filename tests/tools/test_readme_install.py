"""tools/readme_install.py: README's install blocks are found, and the docs repeat them."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import readme_install as ri  # noqa: E402


def test_markers_bind_to_the_next_bash_fence():
    text = (
        "intro\n<!-- readme-install: a-b; imports: torchebm.core torchebm.flows -->\n\n"
        "```bash\n# a comment\npip install x\n\nuv pip install y\n```\n"
        "```bash\nnot marked\n```\n"
    )
    (block,) = ri.parse(text)
    assert block.name == "a-b" and block.line == 2
    assert block.imports == ["torchebm.core", "torchebm.flows"]
    assert block.commands == ["pip install x", "uv pip install y"]


def test_a_marker_without_a_fence_is_an_error():
    with pytest.raises(SystemExit, match="not followed by"):
        ri.parse("<!-- readme-install: a; imports: x -->\nsome text\n")


def test_the_readme_blocks_cover_pip_and_uv_and_the_docs_repeat_them():
    blocks = ri.parse((ROOT / "README.md").read_text(encoding="utf-8"))
    names = [b.name for b in blocks]
    assert len(names) == len(set(names)) >= 4
    commands = [c for b in blocks for c in b.commands]
    assert any(c.startswith("pip install") for c in commands)
    assert any(c.startswith("uv pip install") for c in commands)
    assert any(c.startswith("uv build --all-packages") for c in commands)
    docs = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    for c in commands:
        assert c in docs, f"docs/getting-started.md lacks README's install command {c!r}"
