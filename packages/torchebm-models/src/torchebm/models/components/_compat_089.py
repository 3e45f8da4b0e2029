r"""Load ``state_dict``s and whole pickles saved by torchebm 0.8.9's model classes.

0.8.9 named some submodules differently (``modulation`` for ``adaLN_modulation``,
``head``/``proj`` for ``final_layer``/``linear``, ``patch_embed`` for ``x_embedder``, ...).
Each class registers a public ``load_state_dict`` pre-hook (``torch>=2.5``) that renames
its own 0.8.9 keys under its prefix, so a strict ``load_state_dict`` of an old checkpoint
works at every nesting level without a conversion script.

A model pickled whole (``torch.save(model)``) unpickles its 0.8.9 ``__dict__`` without
calling ``__init__``; each class's ``__setstate__ = accept_089_pickle(marker, kwargs)``
rebuilds it: the constructor runs with the arguments recovered from the old attributes and
submodule shapes, old submodules of the same name and class are kept (they upgraded
themselves first) and the other weights load through those renaming hooks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from torchebm.core.errors import ConfigurationError

__all__ = ["accept_089_keys", "accept_089_pickle"]


def accept_089_keys(module: nn.Module, renames: dict[str, str]) -> None:
    """Register a pre-hook on ``module`` renaming ``prefix + old`` keys to ``prefix + new``.

    Args:
        module: The module whose checkpoints may come from torchebm 0.8.9.
        renames: ``{old_head: new_head}``; a key whose part after the module's prefix starts
            with ``old_head`` is renamed, unless the new key is already present.
    """

    # a partial of a module-level function, not a closure: the module stays picklable
    module.register_load_state_dict_pre_hook(partial(_rename_keys, dict(renames)))


def _rename_keys(
    renames: dict[str, str], mod: nn.Module, state_dict: dict, prefix: str, *args: Any
) -> None:
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        for old, new in renames.items():
            if rest.startswith(old):
                new_key = prefix + new + rest[len(old) :]
                if new_key not in state_dict:
                    state_dict[new_key] = state_dict.pop(key)
                break


def accept_089_pickle(
    marker: str | Callable[[dict[str, Any]], bool],
    init_kwargs: Callable[[dict[str, Any]], dict[str, Any]],
) -> Callable[[nn.Module, dict[str, Any]], None]:
    """A ``__setstate__`` that rebuilds a model pickled whole by torchebm 0.8.9.

    Args:
        marker: An attribute or submodule this version always has and 0.8.9 did not, or
            a test that a ``__dict__`` is 0.8.9's.
        init_kwargs: The constructor arguments, recovered from the 0.8.9 ``__dict__``.
    """

    def __setstate__(self: nn.Module, state: dict[str, Any]) -> None:
        owner: type[Any] = next(
            c for c in type(self).__mro__ if vars(c).get("__setstate__") is __setstate__
        )
        if not _is_089(marker, state):
            super(owner, self).__setstate__(state)
            return
        owner.__init__(self, **init_kwargs(state))
        _restore(self, owner.__name__, state)

    return __setstate__


def _is_089(marker: str | Callable[[dict[str, Any]], bool], state: dict[str, Any]) -> bool:
    if callable(marker):
        return marker(state)
    return marker not in state and marker not in state["_modules"]


def _restore(module: nn.Module, name: str, state: dict[str, Any]) -> None:
    """Put the 0.8.9 submodules and weights into the freshly constructed ``module``."""
    fresh = dict(module.named_children())
    skip = state["_non_persistent_buffers_set"]
    weights = {
        **state["_parameters"],
        **{k: b for k, b in state["_buffers"].items() if k not in skip},
    }
    kept = set()
    for key, child in state["_modules"].items():
        if child is not None and type(fresh.get(key)) is type(child):
            setattr(module, key, child)  # upgraded already (children unpickle first)
            kept.add(key)
        elif child is not None:
            weights.update((f"{key}.{k}", v) for k, v in child.state_dict(keep_vars=True).items())
    weights = {k: v for k, v in weights.items() if v is not None}
    frozen = {
        id(v) for v in weights.values() if isinstance(v, nn.Parameter) and not v.requires_grad
    }
    result = module.load_state_dict(weights, strict=False, assign=True)
    lost = result.unexpected_keys + [k for k in result.missing_keys if k.split(".")[0] not in kept]
    if lost:
        raise ConfigurationError(
            f"cannot upgrade the torchebm 0.8.9 pickle of {name}: no place for or no value of {lost}"
        )
    for p in module.parameters():
        if id(p) in frozen:
            p.requires_grad_(False)
    module.train(bool(state["training"]))


def _eps(norm: Any) -> float:
    return float(getattr(norm, "eps", 1e-6))


def _ratio(width: int, hidden: int) -> float:
    """The ``mlp_ratio`` ``r`` for which this version's ``int(width * r)`` is ``hidden``."""
    r = hidden / width
    return r if int(width * r) == hidden else (hidden + 0.5) / width


def _mlp_ratio(mlp: Any) -> float:
    """``mlp_ratio`` of an (upgraded) `FeedForward`; 4.0 (the default) for another MLP."""
    fc1 = getattr(mlp, "fc1", None)
    return 4.0 if fc1 is None else _ratio(fc1.in_features, fc1.out_features)


def _pick(state: dict[str, Any], *names: str) -> dict[str, Any]:
    return {n: state[n] for n in names if n in state}


def timestep_embedder_kwargs(state: dict[str, Any]) -> dict[str, Any]:
    """`MLPTimestepEmbedder` (0.8.9 had no ``out_dim`` attribute)."""
    out = state["_modules"]["mlp"][-1].out_features
    return {"out_dim": out, **_pick(state, "frequency_embedding_size")}


def label_embedder_kwargs(state: dict[str, Any]) -> dict[str, Any]:
    """`LabelEmbedder` (0.8.9's table was ``embedding``, with or without a null row)."""
    table = state["_modules"]["embedding"]
    null = table.num_embeddings > state["num_classes"]
    extra = {"out_dim": table.embedding_dim, "null_token": null}
    return {**_pick(state, "num_classes", "dropout_prob"), **extra}


def patch_embed_kwargs(state: dict[str, Any]) -> dict[str, Any]:
    """`ConvPatchEmbed2d` (0.8.9 kept only ``patch_size``)."""
    proj = state["_modules"]["proj"]
    return {
        "in_channels": proj.in_channels,
        "embed_dim": proj.out_channels,
        **_pick(state, "patch_size"),
    }


def feed_forward_kwargs(state: dict[str, Any]) -> dict[str, Any]:
    """`FeedForward` (0.8.9: ``net = Sequential(fc1, act, dropout, fc2)``; its activation is
    copied, whatever it was)."""
    fc1, act, drop, _ = state["_modules"]["net"]
    ratio = _ratio(fc1.in_features, fc1.out_features)
    return {
        "embed_dim": fc1.in_features,
        "mlp_ratio": ratio,
        "dropout": drop.p,
        "act_layer": partial(copy.deepcopy, act),
    }


def attention_kwargs(state: dict[str, Any]) -> dict[str, Any]:
    """`MultiheadSelfAttention` (the attributes are the constructor's)."""
    return _pick(state, "embed_dim", "num_heads", "dropout")


def block_kwargs(state: dict[str, Any]) -> dict[str, Any]:
    """`AdaLNZeroBlock`: its (upgraded) attention and MLP are passed on as they are."""
    mods = state["_modules"]
    heads = getattr(mods["attn"], "num_heads", 1)
    found = {
        "num_heads": heads,
        "attn": mods["attn"],
        "mlp": mods["mlp"],
        "eps": _eps(mods["norm1"]),
    }
    return {**_pick(state, "embed_dim", "cond_dim"), **found}


def mlp_block_kwargs(state: dict[str, Any]) -> dict[str, Any]:
    """`AdaLNZeroMLPBlock` (its MLP, with its activation, is kept as it is)."""
    mods = state["_modules"]
    found = {"mlp_ratio": _mlp_ratio(mods["mlp"]), "eps": _eps(mods["norm"])}
    return {**_pick(state, "embed_dim", "cond_dim"), **found}


def head_kwargs(state: dict[str, Any]) -> dict[str, Any]:
    """`AdaLNZeroLinearHead` and `AdaLNZeroPatchHead` (the LayerNorm was ``norm``)."""
    names = ("embed_dim", "cond_dim", "out_dim", "patch_size", "out_channels", "grid_size")
    return {**_pick(state, *names), "eps": _eps(state["_modules"]["norm"])}


def _embedders(state: dict[str, Any]) -> dict[str, Any]:
    """The embedder arguments of a 0.8.9 backbone: its own default ones are rebuilt (from
    ``num_classes`` and the label dropout), a user's modules are passed on."""
    mods = state["_modules"]
    t_emb, y_emb = mods.get("t_embedder"), mods.get("y_embedder")
    found: dict[str, Any] = {"t_embedder": None if state.get("_default_t_embedder") else t_emb}
    if state.get("_default_y_embedder"):
        return {
            **found,
            "num_classes": state["num_classes"],
            "class_dropout_prob": y_emb.dropout_prob,
        }
    return {**found, "y_embedder": y_emb}


def dit_kwargs(state: dict[str, Any]) -> dict[str, Any]:
    """`DiT` (0.8.9 kept the position-embedding kind as ``pos_embed_type``)."""
    mods = state["_modules"]
    blocks = [*mods["blocks"], *mods["head_blocks"]]
    names = ("input_size", "in_channels", "patch_size", "out_channels", "embed_dim", "depth")
    names2 = ("num_heads", "cond_dim", "head_dim", "head_depth")
    found = {
        "mlp_ratio": _mlp_ratio(blocks[0].mlp) if blocks else 4.0,
        "pos_embed": state["pos_embed_type"],
        "head_num_heads": getattr(mods["head_blocks"][0].attn, "num_heads", None)
        if len(mods["head_blocks"])
        else None,
    }
    return {**_pick(state, *names, *names2), **_embedders(state), **found}


def transformer_2d_kwargs(state: dict[str, Any]) -> dict[str, Any]:
    """`ConditionalTransformer2D` (in 0.8.9 a `DiT` subclass)."""
    mods = state["_modules"]
    side, _ = state["input_size"]
    names = ("in_channels", "out_channels", "patch_size", "embed_dim", "depth", "num_heads")
    found = {
        "input_size": side,
        "mlp_ratio": _mlp_ratio(mods["blocks"][0].mlp) if len(mods["blocks"]) else 4.0,
        "frequency_embedding_size": mods["t_embedder"].frequency_embedding_size,
    }
    return {**_pick(state, *names, "cond_dim", "use_sincos_pos_embed"), **found}


def time_mlp_kwargs(state: dict[str, Any]) -> dict[str, Any]:
    """`TimeConditionedMLP` (all its submodules are kept; 0.8.9 also stored which embedders
    were its defaults)."""
    names = ("in_dim", "out_dim", "hidden_dim", "depth", "conditioning", "cond_dim")
    blocks = state["_modules"].get("blocks") or []
    ratio = _mlp_ratio(blocks[0].mlp) if len(blocks) else None
    return {**_pick(state, *names), **_embedders(state), "mlp_ratio": ratio}
