"""`torchebm.utils` (owned by the torchebm meta-package): EMA, profiling, the 0.8.9 distributed names."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchebm.utils import EMA, broadcast_tensor, profile_context


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


@pytest.mark.parametrize(
    "where",
    [
        "meta",
        pytest.param(
            "cpu",
            marks=[
                pytest.mark.cuda,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
            ],
        ),
    ],
)
def test_ema_kept_on_another_device_than_the_model(where):
    # an EMA moved off the model's device (a CPU copy of a GPU model saves GPU memory): the
    # live parameters are moved to the average's device (lerp_ across devices raised)
    net = _net().to("cuda" if where == "cpu" else "cpu")
    ema = EMA(net, decay=0.5).to(where)
    before = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net)
    assert all(e.device.type == where for e in ema.module.parameters())
    if where == "cpu":  # values: half way between the copy and the moved weights
        for e, b in zip(ema.module.parameters(), before):
            torch.testing.assert_close(e, b.cpu() + 0.5)


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


def test_broadcast_tensor_accepts_089_spelling_without_distributed():
    x = torch.arange(3.0)
    with pytest.warns(DeprecationWarning, match="t="):
        assert broadcast_tensor(t=x) is x


def test_ema_strips_wrappers_and_keeps_its_copy_in_eval_mode():
    # EMA(DataParallel(net)) held the wrapper: keys "module.module.*" that an EMA of the
    # bare net could not load; a parent's .train() switched the averaged copy to train mode
    net = _net()
    wrapped = EMA(nn.DataParallel(net), decay=0.5)
    bare = EMA(net, decay=0.5)
    assert type(wrapped.module) is nn.Sequential
    assert list(wrapped.state_dict()) == list(bare.state_dict())
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    wrapped.update(nn.DataParallel(net))
    bare.update(net)
    restored = EMA(_net(), decay=0.5)
    restored.load_state_dict(wrapped.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(restored.parameters(), bare.parameters()))
    holder = nn.Sequential(bare)
    holder.train()
    assert bare.training and not bare.module.training
    x = torch.randn(4, 3)
    before = bare.module[1].running_mean.clone()
    bare(x)  # eval-mode BatchNorm: the running statistics do not move
    assert torch.equal(before, bare.module[1].running_mean)


@pytest.mark.skipif(
    not hasattr(nn.Module, "register_load_state_dict_pre_hook"), reason="torch >= 2.5 hook"
)
@pytest.mark.parametrize("wrapper", ["module.", "_orig_mod."])
def test_ema_loads_a_089_state_dict_of_a_wrapped_model(wrapper):
    # torchebm 0.8.9's EMA deep-copied the wrapper: keys module.module.* (DataParallel/DDP)
    # or module._orig_mod.* (torch.compile), which the bare copy here could not load
    class Nested(nn.Module):  # a submodule really called "module" keeps its name
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.module = nn.Linear(2, 1)

    source = Nested()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.5)
    old = {"module." + wrapper + k: v.clone() for k, v in source.state_dict().items()}
    old["_extra_state"] = {"step": 7}
    ema = EMA(Nested(), decay=0.9)
    ema.load_state_dict(old, strict=True)
    assert ema.step == 7
    for k, v in source.state_dict().items():
        assert torch.equal(ema.module.state_dict()[k], v), k
    # this version's own keys (module.module.weight is the nested submodule's) load as they are
    fresh = EMA(Nested(), decay=0.9)
    fresh.load_state_dict(ema.state_dict(), strict=True)
    assert torch.equal(fresh.module.module.weight, source.module.weight)


def test_copy_to_and_average_parameters_carry_the_buffers():
    # the averaged copy's BatchNorm statistics go with its weights (they were left behind)
    net = _net()
    ema = EMA(net, decay=0.5)
    net(torch.randn(16, 3, generator=torch.Generator().manual_seed(1)))  # moves running stats
    ema.update(net)
    target = _net()
    with torch.no_grad():
        for b in target.buffers():
            b.fill_(7)
    ema.copy_to(target)
    for e, b in zip(ema.module.buffers(), target.buffers()):
        assert torch.equal(e, b)
    assert torch.equal(target[1].running_mean, net[1].running_mean)  # copied, not averaged
    with torch.no_grad():
        for b in net.buffers():
            b.fill_(3)
    with ema.average_parameters(net):
        assert torch.equal(net[1].running_var, ema.module[1].running_var)
    assert torch.all(net[1].running_var == 3)  # restored on exit


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_ema_of_a_half_precision_model_warns_and_a_float32_average_follows_the_closed_form(half):
    # 5,000 updates at d = 0.999 from 0 towards 1: 1 - 0.999^5000 = 0.99328 exactly; a
    # bfloat16 average stalled at 0.25 (float16: 0.756), in silence
    model = nn.Linear(1, 1, bias=False).to(half)
    with torch.no_grad():
        model.weight.zero_()
    stalled, kept = EMA(model, 0.999), EMA(model, 0.999).float()
    with torch.no_grad():
        model.weight.fill_(1.0)
    with pytest.warns(RuntimeWarning, match="EMA averages in torch.*float32"):
        stalled.update(model)
    for _ in range(4999):
        stalled.update(model)
    for _ in range(5000):
        kept.update(model)
    exact = 1 - 0.999**5000
    assert abs(float(kept.module.weight) - exact) < 1e-4
    assert float(stalled.module.weight) < 0.9  # what the warning is about


def test_ema_refuses_an_integer_parameter_rather_than_rounding_it():
    """An integer parameter listed first made the multi-tensor update take torch's
    elementwise fallback for every tensor (10 and 15 averaged to 12): lerp refuses it."""
    model = torch.nn.Module()
    model.count = torch.nn.Parameter(torch.tensor([10]), requires_grad=False)
    model.w = torch.nn.Parameter(torch.ones(2))
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.count.fill_(15)
    with pytest.raises(NotImplementedError):
        ema.update(model)
    assert int(ema.module.count) == 10


@pytest.mark.parametrize("decay", [0.3, 0.5, 0.0, "warmup"])
def test_ema_keeps_an_infinite_live_weight_infinite_at_a_low_decay(decay):
    # torch.lerp with a weight 1 - d >= 0.5 computes live - (live - average) d: NaN for inf
    model = nn.Linear(2, 1)
    ema = EMA(model, 0.999, "warmup") if decay == "warmup" else EMA(model, decay)
    with torch.no_grad():
        model.weight[0, 0], model.bias[0] = math.inf, -math.inf
    ema.update(model)
    assert ema.module.weight[0, 0].item() == math.inf
    assert ema.module.bias[0].item() == -math.inf
    assert torch.isfinite(ema.module.weight[0, 1])
