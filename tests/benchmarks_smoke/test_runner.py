"""Smoke tests of the benchmark runner: the CLI, the report, the compare mode and the floors.

Nothing here is timed: the floors are checked against the library on a few cheap workloads
(the same check the suite runs on its warm-up outputs), the rest exercises the reporting.
"""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _report  # noqa: E402
import run  # noqa: E402
from _harness import Config, Result, geomean  # noqa: E402
from _workloads import all_workloads  # noqa: E402


def _result(name, ratio, group="samplers", status="ok"):
    r = Result(name, group, f"{name} workload", status)
    if status == "ok":
        r.library_s, r.floor_s, r.ratio = ratio * 0.01, 0.01, ratio
    return r


def test_workload_names_are_unique_and_cover_the_issue():
    names = [w.name for w in all_workloads()]
    assert len(names) == len(set(names))
    for required in (
        "langevin_mlp",
        "langevin_gaussian",
        "hmc_gaussian",
        "flow_euler",
        "flow_heun",
        "cd_step",
        "dsm_step",
        "ssm_step",
        "eqm_step",
        "dopri5_solve",
        "exact_ot_256",
        "exact_ot_1024",
        "import_samplers",
    ):
        assert required in names


def test_list_and_unknown_selection(capsys):
    assert run.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "langevin_mlp" in out and "couplings" in out
    with pytest.raises(SystemExit, match="unknown workload"):
        run.main(["--only", "no_such_workload", "--list"])


def test_markdown_table_flags_misses_and_reports_geomean():
    results = [
        _result("fast", 1.02),
        _result("slow", 1.30),
        _result("gone", None, status="skipped: no CUDA"),
    ]
    gm = geomean([1.02, 1.30])
    table = _report.markdown_table(results, {"geomean_ratio": gm, "device": "cpu"})
    assert "| slow |" in table and "1.30 **!**" in table
    assert "1.02 **!**" not in table
    assert f"**{gm:.3f}**" in table and "slow (1.30x)" in table
    assert "skipped: no CUDA" in table
    assert gm == pytest.approx(math.sqrt(1.02 * 1.30))


def test_compare_prints_the_ratio_change(tmp_path):
    def write(path, ratios, gm):
        results = [_result(n, r).to_dict() for n, r in ratios.items()]
        path.write_text(json.dumps({"meta": {"geomean_ratio": gm}, "results": results}))

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    write(old, {"a": 2.0, "b": 1.0}, 1.414)
    write(new, {"a": 1.0, "b": 1.1, "c": 1.0}, 1.03)
    text = _report.compare(str(old), str(new))
    row_a = next(line for line in text.splitlines() if line.startswith("| a |"))
    assert "2.00" in row_a and "1.00" in row_a and "-50.0%" in row_a
    row_b = next(line for line in text.splitlines() if line.startswith("| b |"))
    assert "+10.0%" in row_b
    assert "| c | - | 1.00 |" in text


@pytest.mark.parametrize(
    "name", ["leapfrog_integrate", "euler_maruyama_integrate", "dsm_step", "exact_ot_256"]
)
def test_floor_matches_library(name):
    torch.set_num_threads(1)
    workload = next(w for w in all_workloads() if w.name == name)
    case = workload.build(Config(device=torch.device("cpu"), quick=True))
    note = case.check(case.library(), case.floor())  # raises AssertionError on disagreement
    assert "max|d|" in note
