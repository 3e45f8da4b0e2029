"""The dependency-free progress bar: log lines off a terminal, in-place redraws on one."""

import io

import pytest

from torchebm.cli._progress import Progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_log_lines_at_each_quarter_when_not_a_terminal():
    out = io.StringIO()
    with Progress(8, "train", stream=out) as bar:
        for i in range(8):
            bar.update(loss=1.0 / (i + 1))
    lines = out.getvalue().splitlines()
    assert [line.split("]")[1].split()[0] for line in lines] == ["1/8", "2/8", "4/8", "6/8", "8/8"]
    assert lines[-1].startswith("train  [" + "#" * 24 + "]")
    assert "100%" in lines[-1] and "loss 0.125" in lines[-1]


def test_redraws_in_place_on_a_terminal():
    out = _Tty()
    bar = Progress(3, "x", stream=out, min_interval=0.0)
    for _ in range(3):
        bar.update()
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    assert "3/3 100%" in text


def test_disabled_bar_writes_nothing_but_counts():
    out = io.StringIO()
    bar = Progress(5, stream=out, enabled=False)
    bar.update(2)
    bar.update(10)
    bar.close()
    assert out.getvalue() == "" and bar.n == 5


@pytest.mark.parametrize("total", [0, -1, 2.5, True])
def test_total_is_validated(total):
    with pytest.raises(ValueError, match="total"):
        Progress(total)


def test_render_shows_the_rounded_fill_elapsed_time_and_remaining_time():
    bar = Progress(3, "run", stream=io.StringIO(), width=10)
    bar.update(2)
    bar.start -= 10.0  # 10 s for 2 of 3 units: 5 s per unit, 1 unit (5 s) left
    line = bar.render()
    assert line.startswith("run    [" + "#" * 7 + "-" * 3 + "] 2/3  67%")  # 6.67 -> 7 of 10
    assert "(eta  5.0s)" in line and " 10.0s " in line
