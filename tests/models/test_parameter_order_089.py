"""The models list their parameters in torchebm 0.8.9's order.

An optimizer's ``state_dict`` indexes the parameters by position, so a 0.8.9 training
checkpoint (``torchebm.utils.save_checkpoint``, ``BaseTrainer.save_checkpoint``) resumes
correctly only when ``model.parameters()`` comes in the order 0.8.9 registered them. The
lists below were printed by torchebm 0.8.9 (``named_parameters()`` of these configurations);
0.8.9's submodule names are mapped to today's by the same renames as its state dicts."""

from __future__ import annotations

import pytest

from torchebm.models import DiT, TimeConditionedMLP

_RENAMES = (  # 0.8.9 name fragment -> today's (as the load_state_dict pre-hooks rename)
    ("head.modulation.", "final_layer.adaLN_modulation."),
    ("head.proj.", "final_layer.linear."),
    ("patch_embed.", "x_embedder."),
    ("attn.out_proj.", "attn.proj."),
    ("mlp.net.0.", "mlp.fc1."),
    ("mlp.net.3.", "mlp.fc2."),
    (".modulation.", ".adaLN_modulation."),
    ("y_embedder.embedding.", "y_embedder.embedding_table."),
)

_T = ["t_embedder.mlp.0.weight", "t_embedder.mlp.0.bias", "t_embedder.mlp.2.weight",
      "t_embedder.mlp.2.bias"]  # fmt: skip
_BLOCK = ["blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.0.attn.out_proj.weight",
          "blocks.0.attn.out_proj.bias", "blocks.0.mlp.net.0.weight", "blocks.0.mlp.net.0.bias",
          "blocks.0.mlp.net.3.weight", "blocks.0.mlp.net.3.bias", "blocks.0.modulation.1.weight",
          "blocks.0.modulation.1.bias"]  # fmt: skip
_HEAD = ["head.modulation.1.weight", "head.modulation.1.bias", "head.proj.weight",
         "head.proj.bias"]  # fmt: skip
_PATCH = ["patch_embed.proj.weight", "patch_embed.proj.bias"]

ORDER_089 = {
    "DiT": [*_T, "y_embedder.embedding.weight", *_PATCH, *_BLOCK, *_HEAD],
    "ConditionalTransformer2D": [*_T, *_PATCH, *_BLOCK, *_HEAD],
}


def _today(name: str) -> str:
    for old, new in _RENAMES:
        name = name.replace(old, new)
    return name


def _build(kind: str):
    common = dict(input_size=4, in_channels=3, patch_size=2, embed_dim=8, depth=1, num_heads=2)
    if kind == "DiT":
        return DiT(**common, num_classes=3)
    from torchebm.models import ConditionalTransformer2D

    return ConditionalTransformer2D(**common, cond_dim=8, out_channels=3)


@pytest.mark.parametrize("kind", sorted(ORDER_089))
def test_parameters_come_in_the_089_order(kind):
    # the DiT head listed linear before its modulation, ConditionalTransformer2D its patch
    # embedding before the time embedder: a 0.8.9 Adam state went to the wrong tensors
    names = [n for n, _ in _build(kind).named_parameters()]
    assert names == [_today(n) for n in ORDER_089[kind]]


def test_time_conditioned_mlp_keeps_its_089_order():
    model = TimeConditionedMLP(in_dim=2, hidden_dim=8, depth=2, num_classes=3)
    names = [n for n, _ in model.named_parameters()]
    assert names[:5] == [*_T, "y_embedder.embedding_table.weight"]
    assert names[5:7] == ["stem.weight", "stem.bias"]
    assert names[-4:] == ["head.adaLN_modulation.1.weight", "head.adaLN_modulation.1.bias",
                          "head.linear.weight", "head.linear.bias"]  # fmt: skip
