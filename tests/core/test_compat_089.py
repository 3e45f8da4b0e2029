"""Pieces of torchebm 0.8.9 that core now carries: test-function energies, EMA, profiling,
renamed keyword arguments."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from torchebm.core import (
    BaseModel,
    BoothModel,
    HimmelblauModel,
    StyblinskiTangModel,
    renamed_kwargs,
)
from torchebm.core.errors import ShapeError
from torchebm.utils import EMA, broadcast_tensor, profile_context

MODELS = [
    lambda: BoothModel(dtype=torch.float64),
    lambda: HimmelblauModel(dtype=torch.float64),
    lambda: StyblinskiTangModel(dtype=torch.float64),
]


@pytest.mark.parametrize("make", MODELS)
def test_closed_form_gradient_equals_autograd(make):
    gen = torch.Generator().manual_seed(1)
    model = make()
    x = (torch.randn(32, 2, dtype=torch.float64, generator=gen) * 3).requires_grad_(True)
    (auto,) = torch.autograd.grad(model(x).sum(), x)
    g = model.gradient(x.detach())
    assert g.shape == x.shape and g.dtype == torch.float64
    torch.testing.assert_close(g, auto, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(BaseModel.gradient(model, x.detach()), g, rtol=1e-12, atol=1e-12)


def test_known_minima_and_values():
    assert BoothModel()(torch.tensor([[1.0, 3.0]])).item() == 0.0
    assert BoothModel()(torch.tensor([[0.0, 0.0]])).item() == 49 + 25
    for p in [(3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)]:
        assert (
            HimmelblauModel(dtype=torch.float64)(torch.tensor([p], dtype=torch.float64)).item()
            < 1e-9
        )
    x_star = -2.903534
    st = StyblinskiTangModel(dtype=torch.float64)
    e = st(torch.full((1, 5), x_star, dtype=torch.float64)).item()
    assert e == pytest.approx(-39.16617 * 5, rel=1e-6)
    assert st.gradient(torch.full((1, 5), x_star, dtype=torch.float64)).abs().max() < 1e-4
    assert StyblinskiTangModel()(torch.tensor([1.0, 2.0])).shape == (1,)


def test_two_dimensional_models_reject_other_dims():
    with pytest.raises(ShapeError, match="last dim 2"):
        BoothModel()(torch.zeros(4, 3))
    with pytest.raises(ShapeError, match="last dim 2"):
        HimmelblauModel().gradient(torch.zeros(4, 1))


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))


@pytest.mark.parametrize("schedule", ["constant", "warmup", lambda s: 0.5 + 0.1 * (s % 3)])
def test_ema_equals_closed_form_after_k_updates(schedule):
    net, d, k = _net(), 0.9, 7
    ema = EMA(net, decay=d, decay_schedule=schedule)
    init = [p.detach().clone().double() for p in net.parameters()]
    snapshots, decays = [], []
    gen = torch.Generator().manual_seed(3)
    for s in range(k):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn(p.shape, generator=gen))
        net(torch.randn(5, 3, generator=gen))  # moves the BatchNorm running stats
        snapshots.append([p.detach().clone().double() for p in net.parameters()])
        if schedule == "constant":
            decays.append(d)
        elif schedule == "warmup":
            decays.append(min(d, (1 + s) / (10 + s)))
        else:
            decays.append(schedule(s))
        ema.update(net)
    for i, e in enumerate(ema.module.parameters()):
        # closed form: prod(d) * theta_0 + sum_j (1 - d_j) prod_{s > j} d_s * theta_j
        want = math.prod(decays) * init[i]
        for j in range(k):
            want = want + (1 - decays[j]) * math.prod(decays[j + 1 :]) * snapshots[j][i]
        torch.testing.assert_close(e.double(), want, rtol=1e-5, atol=1e-5)
    for e, b in zip(ema.module.buffers(), net.buffers()):
        assert torch.equal(e, b)
    assert ema.step == k and not any(p.requires_grad for p in ema.module.parameters())


def test_ema_forward_copy_to_and_state_dict_round_trip():
    net = _net().eval()
    ema = EMA(net, decay=0.5)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    ema.update(net)
    x = torch.randn(4, 3)
    other = _net().eval()
    ema.copy_to(other)
    torch.testing.assert_close(ema(x), other(x))
    with ema.average_parameters(net) as averaged:
        torch.testing.assert_close(averaged(x), other(x))
    assert not torch.allclose(net(x), other(x))  # restored on exit
    restored = EMA(_net(), decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.step == 1
    torch.testing.assert_close(restored(x), ema(x))


@pytest.mark.parametrize("bad", [1.0, -0.1, "0.9"])
def test_ema_rejects_bad_decay(bad):
    with pytest.raises((ValueError, TypeError), match="decay"):
        EMA(_net(), decay=bad)
    with pytest.raises(ValueError, match="decay_schedule"):
        EMA(_net(), decay_schedule="cosine")


def test_ema_callable_schedule_out_of_range_is_reported():
    ema = EMA(_net(), decay_schedule=lambda s: 1.5)
    with pytest.raises(ValueError, match=r"decay_schedule\(step\)"):
        ema.update(_net())


def test_profile_context_prints_and_exports(tmp_path, capsys):
    trace = tmp_path / "trace.json"
    with profile_context(profile_memory=False, export_trace=str(trace), row_limit=5) as prof:
        torch.randn(64, 64) @ torch.randn(64, 64)
    assert prof is not None and trace.stat().st_size > 0
    assert "Self CPU" in capsys.readouterr().out
    with profile_context(profile_memory=False, print_table=False):
        torch.ones(3).sum()
    assert capsys.readouterr().out == ""


def test_renamed_kwargs_warns_once_and_maps():
    @renamed_kwargs(old="new")
    def f(new, other=0):
        return new + other

    with pytest.warns(DeprecationWarning, match=r"old=.*now new="):
        assert f(old=2, other=1) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f(old=2) == 2  # once per process
        assert f(new=5) == 5
    with pytest.raises(TypeError, match="both old="):
        f(old=1, new=2)
    assert f.__renamed_kwargs__ == {"old": "new"}


def test_broadcast_tensor_accepts_089_spelling_without_distributed():
    x = torch.arange(3.0)
    with pytest.warns(DeprecationWarning, match="t="):
        assert broadcast_tensor(t=x) is x
