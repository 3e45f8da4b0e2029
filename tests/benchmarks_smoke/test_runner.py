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


def test_pool_takes_the_best_times_of_both_sides_over_runs(tmp_path):
    def write(path, lib, floor):
        row = _result("a", 1.0).to_dict()
        row.update(library_samples=lib, floor_samples=floor, ratio=min(lib) / min(floor))
        path.write_text(json.dumps({"meta": {"git": "abc"}, "results": [row]}))

    paths = [tmp_path / f"run{i}.json" for i in range(3)]
    write(paths[0], [0.30, 0.26], [0.20, 0.25])  # alone: 1.30
    write(paths[1], [0.24, 0.28], [0.22, 0.21])  # alone: 1.14
    write(paths[2], [0.25, 0.27], [0.21, 0.23])  # alone: 1.19
    text = _report.pool([str(p) for p in paths])
    row = next(line for line in text.splitlines() if line.startswith("| a |"))
    # median of (1.30, 1.14, 1.19); pooled best 0.24 / 0.20
    assert "| 1.19 **!** | 1.30, 1.14, 1.19 | 1.20 |" in row
    assert "above 1.15x: a." in text


_CHECKED = [w.name for w in all_workloads() if w.build is not None]


def _build(name):
    torch.set_num_threads(1)
    workload = next(w for w in all_workloads() if w.name == name)
    return workload.build(Config(device=torch.device("cpu"), quick=True))


@pytest.mark.parametrize("name", _CHECKED)
def test_floor_computes_what_the_library_computes(name):
    """Every floor's first output equals the library's (the check the suite runs)."""
    case = _build(name)
    if case.timer is not None:  # a subprocess workload (import time): nothing to compare
        assert case.check is None
        return
    assert case.check is not None, f"{name} has no library/floor check"
    note = case.check(case.library(), case.floor())  # raises AssertionError on disagreement
    assert "max|d|" in note or "chains equal" in note


def _perturbed(out):
    if isinstance(out, tuple):  # training steps: (loss, [param grads])
        loss, grads = out
        return loss, [g if i else g * 1.01 for i, g in enumerate(grads)]
    return out * 1.01 + 0.01


@pytest.mark.parametrize("name", ["langevin_mlp", "nesterov_mlp", "cd_step", "eqm_step"])
def test_checks_catch_a_one_percent_error(name):
    """The checks are tight: a 1% error in the floor's state or first gradient fails."""
    case = _build(name)
    lib = case.library()
    with pytest.raises(AssertionError, match="disagree"):
        case.check(lib, _perturbed(case.floor()))


def test_hmc_floor_evaluates_one_gradient_per_leapfrog_step():
    """The HMC floor reuses the gradient of the accepted end point: L per trajectory."""
    from _samplers import _hmc_case

    calls = []
    case = _hmc_case(Config(device=torch.device("cpu"), quick=True))
    orig = torch.mm

    def counting_mm(*args, **kwargs):
        calls.append(1)
        return orig(*args, **kwargs)

    torch.mm = counting_mm
    try:
        case.floor()
    finally:
        torch.mm = orig
    steps, n_lf = 10, 10
    assert len(calls) == steps * n_lf + 1  # one gradient at the start, then L per trajectory


def test_cuda_langevin_methods_match_their_in_place_floor():
    """Every method of cuda_langevin.py (those that run on CPU) equals the baseline."""
    import cuda_langevin

    rows = cuda_langevin.run(
        ((16, 4),), 5, "cpu", methods=("baseline", "eager", "sampler"), repeats=1, min_time=0.0
    )
    by = {r["method"]: r for r in rows}
    assert set(by) == {"baseline", "eager", "sampler"}
    for name in ("eager", "sampler"):
        assert "drift max|d|" in by[name]["check"] and "noisy max|d|" in by[name]["check"]
