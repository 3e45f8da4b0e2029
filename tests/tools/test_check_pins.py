"""tools/check_pins.py and check_wheels.py: a sibling range is ``>=FLOOR,<NEXT-BREAKING`` of
the sibling's workspace version."""

import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import check_pins  # noqa: E402
import check_wheels  # noqa: E402


@pytest.mark.parametrize(
    "version, cap",
    [("0.1.0", "0.2"), ("0.1.7", "0.2"), ("0.9", "0.10"), ("0.2.0rc1", "0.3"), ("1.4.2", "2")],
)
def test_the_next_breaking_release_after_a_version(version, cap):
    assert check_pins.next_breaking(Version(version)) == Version(cap)


@pytest.mark.parametrize(
    "spec, current",
    [
        (">=0.1.0,<0.2", "0.1.0"),
        ("<0.2,>=0.1.0", "0.1.4"),
        (">=0.1.3,<0.2.0", "0.1.3"),
        (">=1.2,<2", "1.5.0"),
        (">=0.1.0,<0.3", "0.2.0"),  # widened over a breaking minor the dependent survives
        (">=0.2.0,<0.3", "0.2.1"),  # moved to it
    ],
)
def test_a_cap_at_the_siblings_next_breaking_release_passes(spec, current):
    assert check_pins.range_problems(SpecifierSet(spec), Version(current)) == []


@pytest.mark.parametrize(
    "spec, current, expected",
    [
        (
            ">=0.1.0,<1",
            "0.1.0",
            "cap <1 is not the next breaking release of the sibling at 0.1.0: expected <0.2",
        ),
        (">=0.1.0,<0.3", "0.1.0", "expected <0.2"),  # promises a 0.2 nobody has seen
        (">=0.1.0,<0.2", "0.2.0", "expected <0.3"),  # a breaking minor: widen in the change
        (">=0.2.0,<0.2.5", "0.2.0", "expected <0.3"),
        (">=1.0,<3", "1.0", "expected <2"),
        (">=0.1.0,<=5", "0.1.0", "must be one floor and one cap"),
        (">0,<0.2", "0.1.0", "must be one floor and one cap"),
        ("==0.1.0", "0.1.0", "must be one floor and one cap"),
        (">=0.1.0", "0.1.0", "must be one floor and one cap"),
        ("", "0.1.0", "found no version range"),
    ],
)
def test_a_wrong_range_is_reported_with_the_expected_cap(spec, current, expected):
    (problem,) = check_pins.range_problems(SpecifierSet(spec), Version(current))
    assert expected in problem


def test_the_workspace_pins_pass(capsys):
    assert check_pins.pin_problems() == []
    assert check_pins.main() == 0
    assert "pins OK" in capsys.readouterr().out


def test_wheel_metadata_with_a_wide_cap_is_reported():
    def cap(piece):  # the next breaking release of the sibling's workspace version
        return check_pins.next_breaking(Version(check_pins.version_of(piece)))

    core, flows = cap("torchebm-core"), cap("torchebm-flows")
    meta = (
        "Metadata-Version: 2.4\nName: torchebm-samplers\n"
        "Requires-Dist: torch>=2.4\n"
        f"Requires-Dist: torchebm-core<{core},>=0.1.0\n"
        "Requires-Dist: torchebm-flows<99,>=0.1.0\n"
        "Requires-Dist: torchebm-cuda<=99,>=0.1.0; extra == 'cuda'\n"
    )
    problems = check_wheels.requires_problems("x.whl", meta)
    assert len(problems) == 2
    assert "torchebm-flows<99,>=0.1.0" in problems[0] and f"expected <{flows}" in problems[0]
    assert "torchebm-cuda" in problems[1]
