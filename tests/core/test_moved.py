"""`torchebm.core._moved`: old `torchebm.core` names served lazily from the piece that owns them."""

from __future__ import annotations

import importlib.util

import pytest

import torchebm.core as core
from torchebm.core._moved import MOVED, resolve_moved
from torchebm.core.errors import MissingDependencyError


@pytest.mark.parametrize("name", sorted(MOVED))
def test_old_name_resolves_to_the_new_home_or_names_the_install(name):
    module, dist = MOVED[name]
    if importlib.util.find_spec(module) is None:  # tests(torchebm-core): the piece is absent
        with pytest.raises(MissingDependencyError, match=f"pip install {dist}"):
            getattr(core, name)
        return
    new_home = importlib.import_module(module)
    assert getattr(core, name) is getattr(new_home, name)
    assert name in new_home.__all__
    assert name in dir(core) and name not in core.__all__  # not star-exported from core


def test_missing_piece_raises_with_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingDependencyError) as info:
        resolve_moved("BaseTrainer")
    assert "pip install torchebm-losses" in str(info.value)
    assert "torchebm.losses.BaseTrainer" in str(info.value)
    assert isinstance(info.value, ImportError)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        core.NoSuchThing  # noqa: B018
    assert not hasattr(core, "NoSuchThing")
