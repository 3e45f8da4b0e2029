"""The checks never pass having checked nothing: a missing or empty path, a typo'd name."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import check_function_length  # noqa: E402
import check_logic_clones  # noqa: E402
import readme_install  # noqa: E402

TOOLS = [check_function_length, check_logic_clones]


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.__name__)
def test_a_missing_path_is_an_error(tool, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        tool.main([str(tmp_path / "pacakges")])
    assert err.value.code == 2
    assert "no such path" in capsys.readouterr().err


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.__name__)
def test_a_path_without_python_files_fails(tool, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not code\n")
    assert tool.main([str(tmp_path)]) == 1
    assert "nothing was checked" in capsys.readouterr().out


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.__name__)
def test_a_clean_file_still_passes(tool, tmp_path):
    (tmp_path / "ok.py").write_text("def f():\n    return 1\n")
    assert tool.main([str(tmp_path)]) == 0


def test_a_readme_block_name_that_does_not_exist_is_an_error(capsys):
    with pytest.raises(SystemExit) as err:
        readme_install.main(["--list", "no-such-block"])
    assert err.value.code == 2
    assert "no README block named no-such-block" in capsys.readouterr().err
