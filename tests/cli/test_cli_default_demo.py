"""The default demo (EqM, its full default training) end to end.

In a file of its own so that pytest-xdist's ``--dist loadfile`` runs it beside, not after,
the other demo tests of ``test_cli.py`` (each is tens of seconds of training).
"""

import io
import re
from pathlib import Path

import pytest

from torchebm.cli._demos import run_demo

README = Path(__file__).resolve().parents[2] / "README.md"


def _shape(line: str) -> str:
    """A printed line with its numbers replaced (the figures vary with the platform)."""
    return re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", line.rstrip())


def _readme_demo_block() -> list[str]:
    """The lines README.md shows `uv run torchebm demo` printing (its first ```text block)."""
    text = README.read_text(encoding="utf-8")
    block = text.split("```text\n", 1)[1].split("```", 1)[0]
    return block.splitlines()


@pytest.mark.slow
def test_default_eqm_demo_beats_noise_and_the_best_gaussian(tmp_path):
    stream = io.StringIO()
    res = run_demo("eqm", out=str(tmp_path / "eqm.png"), quiet=True, stream=stream)
    assert res["energy_distance"] < 0.25 * res["energy_distance_gaussian"]
    assert res["energy_distance"] < 0.05 * res["energy_distance_init"]
    assert res["mmd"] < 0.25 * res["mmd_init"]
    # README shows this output: the same lines, line for line, up to the figures (and the
    # path the picture was written to)
    printed = [ln for ln in stream.getvalue().splitlines() if not ln.startswith("wrote ")]
    shown = [ln for ln in _readme_demo_block() if not ln.startswith("wrote ")]
    assert [_shape(ln) for ln in printed] == [_shape(ln) for ln in shown]
