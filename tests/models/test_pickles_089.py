"""Models pickled whole by torchebm 0.8.9 (``torch.save(model)``) load and compute here.

The pickles are rebuilt by hand in 0.8.9's attribute layout (`_support.pickles_089`): each
upgraded model must equal the model it was made from (attributes, submodules, state dict)
and give the same outputs; it must survive ``torch.save``/``torch.load`` and ``deepcopy``.
"""

from __future__ import annotations

import pytest
import torch
from _support.pickles_089 import assert_same_state, assert_upgrade_matches, unpickle_089
from torch import nn

from torchebm.models import (
    AdaLNZeroBlock,
    AdaLNZeroLinearHead,
    AdaLNZeroMLPBlock,
    AdaLNZeroPatchHead,
    ConditionalTransformer2D,
    ConvPatchEmbed2d,
    DiT,
    FeedForward,
    LabelEmbedder,
    MLPTimestepEmbedder,
    MultiheadSelfAttention,
    TimeConditionedMLP,
)

B = 3
T = torch.tensor([0.1, 0.5, 0.9])
Y = torch.tensor([0, 2, 1])


def _lin(*shape: int) -> torch.Tensor:
    n = 1
    for s in shape:
        n *= s
    return torch.linspace(-1.0, 1.0, n).reshape(shape)


def _randomised(module: nn.Module) -> nn.Module:
    """Non-zero weights everywhere (the AdaLN gates and heads start at zero)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module


CASES = {
    "timestep_embedder": (
        lambda: MLPTimestepEmbedder(8, frequency_embedding_size=16),
        lambda m: m(T),
    ),
    "label_embedder": (lambda: LabelEmbedder(3, 8, 0.1), lambda m: m(Y, training=False)),
    "label_embedder_no_null": (lambda: LabelEmbedder(3, 8), lambda m: m(Y, training=False)),
    "patch_embed": (
        lambda: ConvPatchEmbed2d(in_channels=2, embed_dim=8, patch_size=2),
        lambda m: m(_lin(B, 2, 4, 4)),
    ),
    "feed_forward": (
        lambda: FeedForward(8, mlp_ratio=1.5, act_layer=nn.SiLU),
        lambda m: m(_lin(B, 5, 8)),
    ),
    "attention": (lambda: MultiheadSelfAttention(8, 2), lambda m: m(_lin(B, 5, 8))),
    "block": (
        lambda: AdaLNZeroBlock(embed_dim=8, num_heads=2, cond_dim=6, mlp_ratio=2.0, eps=1e-5),
        lambda m: m(_lin(B, 5, 8), _lin(B, 6)),
    ),
    "mlp_block": (
        lambda: AdaLNZeroMLPBlock(embed_dim=8, cond_dim=6, mlp_ratio=3.0, act_layer=nn.SiLU),
        lambda m: m(_lin(B, 8), _lin(B, 6)),
    ),
    "linear_head": (
        lambda: AdaLNZeroLinearHead(embed_dim=8, cond_dim=6, out_dim=3),
        lambda m: m(_lin(B, 8), _lin(B, 6)),
    ),
    "patch_head": (
        lambda: AdaLNZeroPatchHead(embed_dim=8, patch_size=2, out_channels=2, grid_size=(2, 1)),
        lambda m: m(_lin(B, 2, 8), _lin(B, 8)),
    ),
    "dit": (
        lambda: DiT(input_size=4, in_channels=1, patch_size=2, embed_dim=8, depth=2, num_heads=2),
        lambda m: m(_lin(B, 1, 4, 4), T),
    ),
    "dit_labels_head": (
        lambda: DiT(
            input_size=(4, 2),
            in_channels=2,
            out_channels=1,
            patch_size=2,
            embed_dim=8,
            depth=1,
            num_heads=2,
            mlp_ratio=2.0,
            cond_dim=12,
            num_classes=3,
            class_dropout_prob=0.2,
            head_dim=4,
            head_depth=1,
            head_num_heads=1,
            pos_embed="learnable",
        ),  # fmt: skip
        lambda m: m.eval()(_lin(B, 2, 4, 2), T, Y),
    ),
    "transformer_2d": (
        lambda: ConditionalTransformer2D(
            in_channels=1,
            out_channels=2,
            input_size=4,
            patch_size=2,
            embed_dim=8,
            depth=1,
            num_heads=2,
        ),  # fmt: skip
        lambda m: m(_lin(B, 1, 4, 4), _lin(B, 8)),
    ),
    "time_mlp_labels": (
        lambda: TimeConditionedMLP(in_dim=2, hidden_dim=8, depth=2, num_classes=3),
        lambda m: m.eval()(_lin(B, 2), T, y=Y),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_089_pickle_becomes_the_model_it_was_made_from(name):
    build, use = CASES[name]
    assert_upgrade_matches(_randomised(build()), use)


def test_transformer_2d_without_position_embedding_has_none_after_unpickling():
    """0.8.9's ``use_sincos_pos_embed=False`` added no position embedding at all."""
    model = ConditionalTransformer2D(
        in_channels=1, out_channels=1, input_size=4, patch_size=2, embed_dim=8, depth=1,
        num_heads=2, use_sincos_pos_embed=False,
    )  # fmt: skip
    _randomised(model)
    upgraded = unpickle_089(model)
    assert upgraded.pos_embed is None
    assert_same_state(upgraded, model)
    x, c = _lin(B, 1, 4, 4), _lin(B, 8)
    torch.testing.assert_close(upgraded(x, c), model(x, c), rtol=0, atol=0)


def test_eval_mode_and_frozen_parameters_are_kept():
    model = _randomised(
        DiT(input_size=4, in_channels=1, patch_size=2, embed_dim=8, depth=1, num_heads=2)
    ).eval()
    model.x_embedder.proj.weight.requires_grad_(False)
    upgraded = unpickle_089(model)
    assert not any(m.training for m in upgraded.modules())
    frozen = [n for n, p in upgraded.named_parameters() if not p.requires_grad]
    assert frozen == ["x_embedder.proj.weight"]


def test_a_089_pickle_still_loads_a_089_state_dict():
    """The upgraded model carries the key-renaming load hooks of a fresh one."""
    model = _randomised(AdaLNZeroLinearHead(embed_dim=8, out_dim=2))
    old_keys = {"modulation.1.weight", "modulation.1.bias", "proj.weight", "proj.bias"}
    state_089 = {
        k.replace("adaLN_modulation", "modulation").replace("linear", "proj"): v
        for k, v in model.state_dict().items()
    }
    assert set(state_089) == old_keys
    upgraded = unpickle_089(AdaLNZeroLinearHead(embed_dim=8, out_dim=2))
    upgraded.load_state_dict(state_089)
    h, c = _lin(B, 8), _lin(B, 8)
    torch.testing.assert_close(upgraded(h, c), model(h, c), rtol=0, atol=0)


def test_a_089_state_dict_and_optimizer_state_without_position_embedding_load():
    """0.8.9's ``ConditionalTransformer2D(use_sincos_pos_embed=False)`` saved no
    ``pos_embed`` (it had none) and its keys under ``patch_embed``/``head``; its optimizer
    state indexes the parameters by position, so the model must have no extra one."""
    kw = dict(in_channels=1, out_channels=1, input_size=4, patch_size=2, embed_dim=8, depth=1)
    model = _randomised(ConditionalTransformer2D(**kw, num_heads=2, use_sincos_pos_embed=False))
    renames = {"x_embedder.": "patch_embed.", "final_layer.": "head."}
    state_089 = {}
    for key, value in model.state_dict().items():
        for new, old in renames.items():
            key = old + key[len(new) :] if key.startswith(new) else key
        state_089[key] = value
    x, c = _lin(B, 1, 4, 4), _lin(B, 8)
    loaded = ConditionalTransformer2D(**kw, num_heads=2, use_sincos_pos_embed=False)
    loaded.load_state_dict(state_089)
    torch.testing.assert_close(loaded(x, c), model(x, c), rtol=0, atol=0)
    # an Adam state over 0.8.9's parameter list (that of the sin-cos model, whose table is a
    # buffer) loads into the optimizer of the loaded model: no parameter more or less
    ref = _randomised(ConditionalTransformer2D(**kw, num_heads=2))
    opt = torch.optim.Adam(ref.parameters())
    ref(x, c).square().mean().backward()
    opt.step()
    loaded_opt = torch.optim.Adam(loaded.parameters())
    loaded_opt.load_state_dict(opt.state_dict())
    for p, q in zip(ref.parameters(), loaded.parameters()):
        if p in opt.state:  # a parameter that took part in the step
            torch.testing.assert_close(loaded_opt.state[q]["exp_avg"], opt.state[p]["exp_avg"])
