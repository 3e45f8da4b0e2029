"""tools/run_doc_examples.py: which fenced blocks are python blocks, and where each one ends."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import run_doc_examples as rde  # noqa: E402


@pytest.mark.parametrize(
    "fence",
    [
        "```python",
        "```py",
        "```python3",
        "```Python",
        "``` python",
        "````python",
        "~~~python",
        "~~~~ py",
        '```python title="x.py"',
        '```py linenums="1" hl_lines="2"',
        "```{.python}",
    ],
)
def test_python_fence_forms_are_found(fence):
    close = fence[: len(fence) - len(fence.lstrip(fence[0]))]  # the run of ` or ~
    text = f"# P\n{fence}\nx = 1\n{close}\n"
    (block,) = rde.parse_blocks(text)
    assert block.code == "x = 1\n"


@pytest.mark.parametrize("fence", ["```bash", "```pycon", "```text", "```", "~~~"])
def test_other_fences_are_not_run(fence):
    close = "~~~" if fence.startswith("~") else "```"
    assert rde.parse_blocks(f"# P\n{fence}\nx = 1\n{close}\n") == []


def test_a_titled_block_does_not_swallow_the_next_one():
    text = (
        '# P\n```python title="a.py"\na = 1\n```\n\ntext\n\n```python\nb = 2\n```\n'
        "```bash\nls\n```\n"
    )
    assert [b.code for b in rde.parse_blocks(text)] == ["a = 1\n", "b = 2\n"]


def test_a_longer_fence_ends_only_at_a_fence_as_long_of_the_same_character():
    text = "# P\n````python\ns = '''\n```\n~~~~\n'''\n````\n~~~py\nt = 2\n~~~~~\n"
    blocks = rde.parse_blocks(text)
    assert [b.code for b in blocks] == ["s = '''\n```\n~~~~\n'''\n", "t = 2\n"]


def test_headings_inside_any_fence_are_not_headings():
    text = "# One\n~~~text\n# not a heading\n~~~\n```py\nx = 1\n```\n"
    (block,) = rde.parse_blocks(text)
    assert block.page == "One" and block.section == "One"
