"""The default demo (EqM, its full default training) end to end.

In a file of its own so that pytest-xdist's ``--dist loadfile`` runs it beside, not after,
the other demo tests of ``test_cli.py`` (each is tens of seconds of training).
"""

import io

import pytest

from torchebm.cli._demos import run_demo


@pytest.mark.slow
def test_default_eqm_demo_beats_noise_and_the_best_gaussian(tmp_path):
    res = run_demo("eqm", out=str(tmp_path / "eqm.png"), quiet=True, stream=io.StringIO())
    assert res["energy_distance"] < 0.25 * res["energy_distance_gaussian"]
    assert res["energy_distance"] < 0.05 * res["energy_distance_init"]
    assert res["mmd"] < 0.25 * res["mmd_init"]
