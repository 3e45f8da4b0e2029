"""Objects laid out as torchebm 0.8.9 pickled them, for the whole-pickle upgrade tests.

No 0.8.9 wheel is needed: `as_089(obj)` copies an object built here and rewrites its
``__dict__`` (and, first, those of its submodules) into 0.8.9's attribute layout, from the
facts of 0.8.9's source (which attributes each class set, under which names, which
submodules and buffers it registered). `unpickle_089(obj)` pickles that copy and loads it
back: the unpickler calls each class's ``__setstate__`` with the 0.8.9 state, children
first, exactly as ``torch.load`` of a file written by 0.8.9 does. The weights are ``obj``'s,
so the upgraded object must compute what ``obj`` computes.
"""

from __future__ import annotations

import copy
import io
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["as_089", "assert_same_state", "assert_upgrade_matches", "roundtrip", "unpickle_089"]

_TORCHEBM = ("_placement_cache",)
_SAMPLER = ("nan_policy", "n_steps", "backend", "_compiled_step", "_last_call")
_SAMPLER += ("_mass_scalar", "_solver_report", "grad_tol")
_LOSS = ("conditioning", "nan_policy", "_finite", "_host", "init_noise_scale", "fd_epsilon")
_LOSS += ("variance_reduction", "time_sampler", "_neg_model_kwargs")


def _names(obj: Any) -> set[str]:
    return {c.__name__ for c in type(obj).__mro__}


def _rename(table: dict[str, Any], renames: dict[str, str]) -> None:
    for new, old in renames.items():
        if new in table:
            table[old] = table.pop(new)


def _pop(table: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        table.pop(name, None)


def _integrator(obj: Any, s: dict[str, Any]) -> None:
    _pop(s, ("_evaluations", "_zeros_cache", "_solver"))
    if "BaseRungeKuttaIntegrator" in _names(obj):
        _rename(s, {"norm": "_norm"})
        n = len(obj.tableau_b)
        a = torch.zeros(n, n)
        for i, row in enumerate(obj.tableau_a):
            a[i, : len(row)] = torch.tensor(row, dtype=torch.float32)
        e = obj.error_weights
        s["_buffers"].update(
            _buf_a=a,
            _buf_b=torch.tensor(obj.tableau_b),
            _buf_c=torch.tensor(obj.tableau_c),
            _buf_e=None if e is None else torch.tensor(e),
        )
        s["_stage_implicit"] = tuple(len(r) == i + 1 for i, r in enumerate(obj.tableau_a))
    elif obj.separable:
        s.update(_mass_view_ndim=None, _mass_view_shape=None)


def _sampler(obj: Any, s: dict[str, Any]) -> None:
    _pop(s, _SAMPLER)
    if "_HMCBase" in _names(obj) and "_mass" in s["_buffers"]:
        mass = s["_buffers"].pop("_mass")
        s["_non_persistent_buffers_set"].discard("_mass")
        s["mass"] = obj._mass_scalar if obj._mass_scalar is not None else mass
    if "FlowSampler" in _names(obj):
        _rename(s, {"_prediction": "prediction_type", "_last_step_size": "last_step_size"})
        if s["mode"] == "ode":
            s["last_step_size"] = None
        s["_default_n_steps"] = 50 if s["mode"] == "ode" else 250


def _loss(obj: Any, s: dict[str, Any]) -> None:
    cond, null = obj.conditioning, obj.conditioning.null_condition
    # 0.8.9's nn.Module.__setattr__ registered a Parameter or Module null as the loss's own
    table = {nn.Parameter: s["_parameters"], nn.Module: s["_modules"]}
    next((t for kind, t in table.items() if isinstance(null, kind)), s)["null_condition"] = null
    s.update(cfg_dropout=cond.cfg_dropout)
    s.update(_condition_check_pending=cond.pending, _condition_probe_deferrals=0)
    if "time_sampler" in s:  # the flow objectives kept the time-law options themselves
        ts = s["time_sampler"]
        s.update(t_sampler=ts.kind, t_p_mean=ts.t_p_mean, t_p_std=ts.t_p_std)
    _pop(s, _LOSS)
    if "_functional_model" in s:  # now a 1-tuple (kept out of the module tree)
        s["_functional_model"] = s["_functional_model"][0]
    if "BaseContrastiveDivergence" in _names(obj):
        s["_buffers"].pop("buffer_age", None)
        s.update(_buffer_ptr_int=0, buffer_initialized=False, schedulers={})


def _model(obj: Any, s: dict[str, Any]) -> None:
    names, mods = _names(obj), s["_modules"]
    if "MLPTimestepEmbedder" in names:
        s.pop("out_dim")
        half = s["frequency_embedding_size"] // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        s["_buffers"]["freqs"] = freqs
        s["_non_persistent_buffers_set"].add("freqs")
    elif "LabelEmbedder" in names:
        s["null_label_id"] = obj.null_label_id
        _pop(s, ("out_dim", "null_token"))
        _rename(mods, {"embedding_table": "embedding"})
    elif "ConvPatchEmbed2d" in names:
        _pop(s, ("in_channels", "embed_dim"))
    elif "FeedForward" in names:
        mods["net"] = nn.Sequential(*(mods.pop(k) for k in ("fc1", "act", "drop", "fc2")))
    elif "MultiheadSelfAttention" in names:
        _rename(mods, {"proj": "out_proj"})
    elif names & {"AdaLNZeroBlock", "AdaLNZeroMLPBlock", "AdaLNZeroLinearHead"}:
        _rename(mods, {"adaLN_modulation": "modulation", "linear": "proj"})
    elif "AdaLNZeroPatchHead" in names:
        _rename(mods, {"adaLN_modulation": "modulation", "linear": "proj", "norm_final": "norm"})
    _backbone(obj, s)


def _backbone(obj: Any, s: dict[str, Any]) -> None:
    names, mods = _names(obj), s["_modules"]
    if names & {"DiT", "TimeConditionedMLP", "ConditionalTransformer2D"}:
        s.update(_default_t_embedder=True, _default_y_embedder=mods.get("y_embedder") is not None)
    if names & {"DiT", "ConditionalTransformer2D"}:
        _rename(mods, {"x_embedder": "patch_embed", "final_layer": "head"})
    if "ConditionalTransformer2D" in names:  # a DiT subclass in 0.8.9, not a TorchEBMModule
        _pop(s, ("_amp_dtype", "autocast_available", "use_mixed_precision", "num_patches"))
        s["_buffers"].pop("_torchebm_probe")
        side = s["input_size"]
        s.update(input_size=(side, side), grid_size=(s["grid_size"],) * 2, head_depth=0)
        s.update(head_dim=s["embed_dim"], head_proj=None, pos_embed_type="sincos")
        mods["head_blocks"] = nn.ModuleList()
        if not s["use_sincos_pos_embed"]:  # 0.8.9 had no position embedding then
            s["_parameters"].pop("pos_embed", None)
            s.update(pos_embed=None, pos_embed_type=None)


def _old_dict(obj: Any, memo: dict[int, Any]) -> dict[str, Any]:
    s = dict(vars(obj))
    if isinstance(obj, nn.Module):
        s["_modules"] = {k: _copy(m, memo) for k, m in obj.named_children()}
        s["_parameters"] = dict(s["_parameters"])
        s["_buffers"] = dict(s["_buffers"])
        s["_non_persistent_buffers_set"] = set(s["_non_persistent_buffers_set"])
        for key in [k for k in s if "hooks" in k and isinstance(s[k], dict)]:
            s[key] = OrderedDict()  # 0.8.9's classes registered no hooks
    if "schedulers" in s:
        s["schedulers"] = dict(s["schedulers"])
    names = _names(obj)
    if "TorchEBMModule" in names:
        _pop(s, _TORCHEBM)
        s.update(_cached_device=None, _cached_dtype=None)
    if "BaseIntegrator" in names:
        _integrator(obj, s)
    elif "BaseSampler" in names:
        _sampler(obj, s)
    elif "BaseLoss" in names:
        _loss(obj, s)
    elif type(obj).__module__.startswith("torchebm.models"):
        _model(obj, s)
    elif "GaussianModel" in names:  # 0.8.9 kept the buffers mean and cov_inv only
        s["_buffers"].pop("cov")
        s["_non_persistent_buffers_set"].discard("cov")
    return s


def _copy(obj: Any, memo: dict[int, Any]) -> Any:
    if obj is None or not isinstance(obj, nn.Module):
        return obj
    if id(obj) not in memo:  # shared submodules stay shared, as in a pickle
        bare = type(obj).__new__(type(obj))
        memo[id(obj)] = bare
        vars(bare).update(_old_dict(obj, memo))
    return memo[id(obj)]


def as_089(obj: nn.Module, memo: dict[int, Any] | None = None) -> nn.Module:
    """A bare copy of ``obj`` (sharing its tensors) with torchebm 0.8.9's ``__dict__``;
    calls sharing one ``memo`` share the copies of the submodules they have in common."""
    return _copy(obj, {} if memo is None else memo)


def roundtrip(obj: Any) -> Any:
    """``torch.load(torch.save(obj))``."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def unpickle_089(obj: nn.Module) -> nn.Module:
    """``obj`` as ``torch.load`` returns it from a file written by torchebm 0.8.9."""
    return roundtrip(as_089(obj))


def assert_same_state(upgraded: nn.Module, fresh: nn.Module) -> None:
    """Same class, attributes, submodule names and state dict (keys and values) as ``fresh``."""
    assert type(upgraded) is type(fresh)
    for obj in (upgraded, fresh):  # a Schedulable creates its (empty) dict on first use
        getattr(obj, "get_schedulers", dict)()
    assert set(vars(upgraded)) == set(vars(fresh))
    names = [n for n, _ in upgraded.named_modules()]
    assert names == [n for n, _ in fresh.named_modules()]
    got, want = upgraded.state_dict(), fresh.state_dict()
    assert list(got) == list(want)
    for key, value in want.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(got[key], value), key


def assert_upgrade_matches(obj: nn.Module, run: Callable[[Any], Any]) -> list[nn.Module]:
    """``obj`` through a 0.8.9 pickle, then saved again and deep-copied: each of the three
    has ``obj``'s state (`assert_same_state`) and ``run`` of each equals ``run(obj)``
    exactly. Returns the three."""
    upgraded = unpickle_089(obj)
    copies = [upgraded, roundtrip(upgraded), copy.deepcopy(upgraded)]
    for other in copies:
        assert_same_state(other, obj)
    want = run(obj)
    for other in copies:
        torch.testing.assert_close(run(other), want, rtol=0, atol=0)
    return copies
