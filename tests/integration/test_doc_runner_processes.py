"""How tools/run_doc_examples.py runs pages and scripts: forked from its forkserver (the
default) or as fresh pythons (``--no-preload``); a crashed page, a failing script and the
pages after them are reported alike in both, and a hung page is killed at its timeout.

In a file of its own so that pytest-xdist's ``--dist loadfile`` runs it beside
test_doc_examples.py: the forked call waits out a hung page's timeout.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CRASH = "# A\n```python\nimport os\nos.write(2, b'said by the dying process')\nos._exit(3)\n```\n"
CRASH += "```python\nx = 1\n```\n"
HANG = "# B\n```python\nimport time\ntime.sleep(120)\n```\n"
DRAW = "# C\n```python\nimport random\nprint('draw', random.random())\n```\n"
GOOD_SCRIPT = """import os, sys
from pathlib import Path
if __name__ == "__main__":
    assert os.environ["TORCHEBM_SMOKE"] == "1"
    assert Path.cwd().resolve() != Path(__file__).resolve().parent
    print("ran", sys.argv[0] == __file__)
"""
BAD_SCRIPT = "import sys\nprint('to stdout')\nsys.exit(4)\n"


@pytest.mark.slow  # page subprocesses: integration runs it, integration_py skips it
@pytest.mark.parametrize("preload", [True, False], ids=["forkserver", "fresh-python"])
def test_crashes_hangs_and_script_exits_are_reported_alike_in_both_modes(tmp_path, preload):
    doc = tmp_path / "doc.md"
    # a hung page costs its whole timeout: only the forked mode (this runner's own process
    # handling) gets one; a fresh python's timeout is subprocess.run's
    doc.write_text(CRASH + (HANG if preload else "") + DRAW)
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(GOOD_SCRIPT)
    bad.write_text(BAD_SCRIPT)
    cmd = [sys.executable, str(ROOT / "tools" / "run_doc_examples.py"), "--no-site", "-v"]
    # a forked page starts at once; a fresh python first imports torch to seed it
    timeout = "8" if preload else "120"
    cmd += ["--seed-docs", str(doc), "--timeout", timeout, "--script", str(good)]
    cmd += ["--script", str(bad), *([] if preload else ["--no-preload"])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    lines = out.splitlines()
    # the block that kills its process and the block after it on the same page
    assert sum(ln.startswith("FAIL") and "page process crashed" in ln for ln in lines) == 2
    assert "said by the dying process" in out  # the dead process's own output is shown
    timed_out = [ln for ln in lines if ln.startswith("FAIL") and "page timed out after 8s" in ln]
    assert len(timed_out) == (1 if preload else 0)
    assert sum("| draw" in ln for ln in lines) == 1  # the page after them still runs
    assert "PASS  good.py" in out and "| ran True" in out  # __main__, own directory, env
    assert "FAIL  bad.py" in out and "(to stdout)" in out  # failed by its exit status
    n_blocks = 4 if preload else 3
    assert f"documentation blocks: 1/{n_blocks} passed; scripts: 1/2 passed" in out
    assert lines[-1] == f"2 passed, {n_blocks} failed"
