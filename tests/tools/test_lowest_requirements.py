"""tools/lowest_requirements.py: the locked version is the lock entry for the interpreter."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import lowest_requirements as lr  # noqa: E402

LOCK = {
    "package": [
        {"name": "numpy", "version": "2.2.0"},
        {
            "name": "torch",
            "version": "2.14.1",
            "resolution-markers": ["python_full_version < '3.11'"],
        },
        {
            "name": "torch",
            "version": "2.15.0",
            "resolution-markers": [
                "python_full_version >= '3.12'",
                "python_full_version >= '3.11' and python_full_version < '3.12'",
            ],
        },
    ]
}


@pytest.mark.parametrize(
    "python, torch", [("3.10.13", "2.14.1"), ("3.11.7", "2.15.0"), ("3.13.0", "2.15.0")]
)
def test_the_torch_entry_matches_the_interpreter(python, torch):
    env = {"python_full_version": python, "python_version": python.rsplit(".", 1)[0]}
    assert lr.locked_versions(LOCK, env) == {"numpy": "2.2.0", "torch": torch}


def test_the_real_lock_gives_a_torch_with_a_wheel_for_this_interpreter(capsys):
    lr.main(["torchebm-core"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("-e") and lines[0].endswith("torchebm-core")
    pins = [ln.removeprefix("torch==") for ln in lines if ln.startswith("torch==")]
    assert len(pins) == 1
    lock = lr.tomllib.loads((lr.ROOT / "uv.lock").read_text())
    entry = next(p for p in lock["package"] if p["name"] == "torch" and p["version"] == pins[0])
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert any(f"-{tag}-" in w["url"] for w in entry["wheels"]), (pins[0], tag)
