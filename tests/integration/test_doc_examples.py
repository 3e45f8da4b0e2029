"""The documentation runner (tools/run_doc_examples.py): parsing, the epoch cut, end to end."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _support.examples import load_tool

ROOT = Path(__file__).resolve().parents[2]
rde = load_tool("run_doc_examples")

DOC = textwrap.dedent(
    """\
    # Page one

    Text with `inline` code.

    ## First

    ```python
    x = 1
    ```

    ```bash
    echo not python
    ```

    ## Second

    ```python
    # Not a heading: a comment inside a fence
    y = x + 1
    ```

    1. A list item with an excerpt:

       ```python
       z = y * 2
       ```

    # Page two

    ```python
    def helper():
        return 3
    ```
    """
)


def test_blocks_are_grouped_by_page_with_their_nearest_heading():
    blocks = rde.parse_blocks(DOC)
    assert [(b.page, b.section) for b in blocks] == [
        ("Page one", "First"),
        ("Page one", "Second"),
        ("Page one", "Second"),
        ("Page two", "Page two"),
    ]
    assert blocks[1].code.startswith("# Not a heading")
    assert blocks[2].code == "z = y * 2\n" and blocks[2].indented
    assert [b.hoist for b in blocks] == [False, False, False, True]


def test_definition_only_blocks():
    assert rde.is_definition_only("import os\n\ndef f():\n    return os\n")
    assert rde.is_definition_only('"""doc"""\nclass A:\n    pass\n')
    assert not rde.is_definition_only("import os\n")
    assert not rde.is_definition_only("def f():\n    pass\nf()\n")


def test_epoch_loops_are_cut_and_nothing_else():
    code = textwrap.dedent(
        """\
        for epoch in range(EPOCHS):
            for i in range(100):
                pass
        for step in range(500):
            pass
            for Epoch_idx in range(10):  # inner
                pass
        """
    )
    out, n = rde.cut_epochs(code, 2)
    assert n == 2
    assert "for epoch in range(min(EPOCHS, 2)):" in out
    assert "for Epoch_idx in range(min(10, 2)):  # inner" in out
    assert "for i in range(100):" in out and "for step in range(500):" in out
    assert rde.cut_epochs(code, None) == (code, 0)


def test_savefig_directories():
    code = (
        "plt.savefig('docs/a/b.png')\nfig.savefig(f\"out/{epoch}.png\")\nplt.savefig('flat.png')\n"
    )
    assert rde.output_dirs(code) == ["docs/a", "out"]


def test_the_seed_docs_parse_with_their_context_entries():
    spec = rde.find_seed_docs(None)
    if spec is None:
        pytest.skip(
            f"seed-documentation corpus not given: set {rde.SEED_DOCS_ENV}=<file> to check "
            "that its blocks parse and that every CONTEXT/REQUIRES entry matches one block"
        )
    blocks = rde.parse_blocks(spec.read_text(encoding="utf-8"))
    assert len(blocks) >= 31
    with_context = [b for b in blocks if b.context]
    assert len(with_context) == len(rde.CONTEXT)  # every entry matches exactly one block
    assert sum(bool(b.requires) for b in blocks) == len(rde.REQUIRES)


def test_the_docs_pages_are_found_and_skips_are_explicit():
    blocks = rde.site_blocks()
    pages = {b.page for b in blocks}
    assert "docs/getting-started.md" in pages
    assert all(p.startswith("docs/") and p.endswith(".md") for p in pages)
    assert set(rde.SKIP_PAGES) <= pages  # a skip entry names a page that exists
    assert sum(not b.skip for b in blocks) >= 10  # the runnable blocks outnumber the skips


def test_a_skip_mark_skips_the_next_block_with_its_reason():
    text = "# P\n<!-- doc-examples: skip needs two GPUs -->\n\n```python\nx = 1\n```\n"
    text += "```python\ny = 2\n```\n"
    blocks = rde.parse_blocks(text)
    assert [b.skip for b in blocks] == ["needs two GPUs", ""]


def test_without_the_corpus_one_line_says_it_was_skipped(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != rde.SEED_DOCS_ENV}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "run_doc_examples.py"), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [ln for ln in done.stdout.splitlines() if "seed-documentation corpus" in ln]
    assert len(lines) == 1 and "skipped" in lines[0] and rde.SEED_DOCS_ENV in lines[0]
    assert "docs/getting-started.md" in done.stdout and "examples/" in done.stdout
    env[rde.SEED_DOCS_ENV] = str(tmp_path / "missing.txt")
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "run_doc_examples.py"), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode != 0 and "is not a file" in done.stderr


def _run(tmp_path, text, *args):
    doc = tmp_path / "doc.md"
    doc.write_text(textwrap.dedent(text))
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "run_doc_examples.py"),
            "--seed-docs",
            str(doc),
            "--no-scripts",
            "--no-site",
            "--no-preload",  # fresh pythons: a few pages do not repay the forkserver's imports
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # page subprocesses: integration runs it, integration_py skips it
def test_runner_end_to_end_carries_names_along_a_page_and_reports(tmp_path):
    done = _run(
        tmp_path,
        """\
        # A
        ```python
        value = 41
        ```
        ```python
        for epoch in range(10**9):
            value += 1
        plt_dir = "out"
        ```
        ```python
        import matplotlib.pyplot as plt
        plt.plot([value]); plt.savefig("out/deep/fig.png")
        assert value == 43
        ```
        # B
        ```python
        assert "value" not in globals()
        ```
        """,
        "--epochs",
        "2",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "4 passed, 0 failed"


@pytest.mark.slow  # page subprocesses: integration runs it, integration_py skips it
def test_runner_fails_loudly(tmp_path):
    done = _run(tmp_path, "# A\n```python\nraise ValueError('boom')\n```\n")
    assert done.returncode == 1
    assert "ValueError: boom" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"


def _draws(stdout):
    return [ln.split("|", 1)[1].strip() for ln in stdout.splitlines() if "| draw" in ln]


@pytest.mark.slow  # page subprocesses: integration runs it, integration_py skips it
def test_pages_draw_fresh_seeds_and_a_failure_names_the_seed_that_replays_it(tmp_path):
    doc = "# A\n```python\nimport torch\nprint('draw', torch.rand(1).item())\n```\n"
    doc = doc + doc.replace("# A", "# B")
    fresh = _run(tmp_path, doc, "-v")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    a, b = _draws(fresh.stdout)
    assert a != b  # no fixed seed: each page starts from fresh entropy
    doc += "# C\n```python\nraise ValueError('boom')\n```\n"
    fixed = _run(tmp_path, doc, "-v", "--seed", "7")
    a, b = _draws(fixed.stdout)
    assert a == b  # --seed replays one draw on every page
    assert "page seed 7: replay with --seed 7 --only 'C'" in fixed.stdout
