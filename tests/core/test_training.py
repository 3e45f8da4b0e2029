"""`torchebm.core._training`: EMA, `requires_grad` and the functional checkpoints."""

from __future__ import annotations

import argparse
import collections
import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from torchebm.core import load_checkpoint, requires_grad, save_checkpoint, update_ema


class Quadratic(nn.Module):
    """``E(x) = sum_i w_i x_i^2 / 2`` with a scalar offset ``b`` (parameters w, b)."""

    def __init__(self, dim: int = 2):
        super().__init__()
        self.w = nn.Parameter(torch.ones(dim))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x, y=None):
        e = 0.5 * (self.w * x**2).sum(-1) + self.b
        return e if y is None else e + y.to(e.dtype)


def data(n: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def test_update_ema_closed_form_and_validation():
    model = Quadratic()
    ema = copy.deepcopy(model)
    requires_grad(ema, False)
    assert not any(p.requires_grad for p in ema.parameters())
    with torch.no_grad():
        model.w.fill_(3.0)
        model.b.fill_(-1.0)
    update_ema(ema, model, decay=0.9)
    assert torch.allclose(ema.w, torch.full((2,), 0.9 * 1 + 0.1 * 3))
    assert torch.allclose(ema.b, torch.tensor(0.1 * -1.0))
    update_ema(ema, model, decay=0.0)
    assert torch.equal(ema.w, model.w.detach())
    for bad, exc in [(1.5, ValueError), (-0.1, ValueError), ("a", TypeError), (True, TypeError)]:
        with pytest.raises(exc, match="decay"):
            update_ema(ema, model, decay=bad)
    with pytest.raises(ValueError, match="no parameter named 'w'"):
        update_ema(nn.Linear(2, 2), model)
    with pytest.raises(TypeError, match="ema_model"):
        update_ema("ema", model)
    with pytest.raises(TypeError, match="flag"):
        requires_grad(model, 1)


def test_functional_checkpoint_round_trip(tmp_path):
    model = Quadratic()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(data(4)).mean().backward()
    opt.step()
    ema = copy.deepcopy(model)
    args = argparse.Namespace(lr=0.1, name="run", dims=[1, 2])
    path = save_checkpoint(model, opt, 12, tmp_path / "ck", ema_model=ema, args=args)
    assert isinstance(path, str) and Path(path).name == "0000012.pt"  # str, as in 0.8.9
    m2, e2 = Quadratic(), Quadratic()
    o2 = torch.optim.Adam(m2.parameters(), lr=0.1)
    ck = load_checkpoint(path, m2, ema_model=e2, optimizer=o2)
    assert ck["step"] == 12 and ck["args"] == {"lr": 0.1, "name": "run", "dims": [1, 2]}
    assert torch.equal(m2.w, model.w) and torch.equal(e2.w, ema.w)
    assert torch.equal(
        o2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    with pytest.raises(TypeError, match="args"):
        save_checkpoint(model, opt, 1, tmp_path, args={"f": object()})
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(model, opt, -1, tmp_path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt", model)


def test_checkpoint_args_store_numpy_scalars_as_plain_numbers(tmp_path):
    # np.float64 (a float subclass) was pickled as numpy and broke load_checkpoint's
    # weights-only read; np.int64 was refused at save
    np = pytest.importorskip("numpy")
    model = Quadratic()
    args = argparse.Namespace(lr=np.float64(1e-3), n=np.int64(3), flag=True, name=np.str_("r"))
    path = save_checkpoint(model, None, 5, tmp_path, args=args)
    ck = load_checkpoint(path, Quadratic())
    assert ck["args"] == {"lr": 1e-3, "n": 3, "flag": True, "name": "r"}
    assert [type(ck["args"][k]) for k in ("lr", "n", "flag", "name")] == [float, int, bool, str]
    with pytest.raises(TypeError, match="args .*complex"):
        save_checkpoint(model, None, 6, tmp_path, args={"z": 1j})
    # a NamedTuple was rebuilt from one generator argument (TypeError: missing 'b'); it is
    # stored as a plain tuple, which weights_only reads
    pair = collections.namedtuple("Pair", "a b")
    path = save_checkpoint(model, None, 7, tmp_path, args={"nt": pair(np.float64(1.5), 2)})
    assert load_checkpoint(path, Quadratic())["args"] == {"nt": (1.5, 2)}


def test_update_ema_with_decay_zero_copies_over_a_non_finite_average():
    # 0 * inf is NaN: an average holding inf stayed NaN although decay=0 "copies the weights"
    model, ema = Quadratic(), Quadratic()
    with torch.no_grad():
        ema.w.fill_(float("inf"))
        ema.b.fill_(float("nan"))
        model.w.copy_(torch.tensor([2.0, -3.0]))
    update_ema(ema, model, decay=0.0)
    assert torch.equal(ema.w, model.w) and torch.equal(ema.b, model.b)


def test_load_checkpoint_checks_the_optimizer_and_ema_model_before_loading(tmp_path):
    # optimizer="x" failed with AttributeError after the model was overwritten; a wrong
    # ema_model was accepted silently when the file held no "ema"
    model = Quadratic()
    path = save_checkpoint(model, None, 3, tmp_path)
    target = Quadratic()
    with torch.no_grad():
        target.w.fill_(5.0)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer, got str"):
        load_checkpoint(path, target, optimizer="x")
    with pytest.raises(TypeError, match="ema_model must be an nn.Module, got int"):
        load_checkpoint(path, target, ema_model=3)
    assert torch.equal(target.w, torch.full((2,), 5.0))  # nothing was loaded
