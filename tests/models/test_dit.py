"""DiT (forward(x, t, y, *, cond)), its paper presets, TimeConditionedMLP, the AdaLN-Zero
vector blocks, ClassifierFreeGuidance and the 0.8.9 component options."""

from __future__ import annotations

import math

import pytest
import torch
from _support.dtypes import default_dtype
from torch import nn

import torchebm.models as M
from torchebm.core.errors import ShapeError

PAPER = {  # Peebles & Xie 2023, Table 1
    "s": (384, 12, 6),
    "b": (768, 12, 12),
    "l": (1024, 24, 16),
    "xl": (1152, 28, 16),
}


@pytest.mark.parametrize("size", sorted(PAPER))
@pytest.mark.parametrize("patch", [2, 4, 8])
def test_presets_have_the_paper_sizes(size, patch, monkeypatch):
    seen = {}

    def fake_init(self, **kw):  # record the configuration without building XL weights
        seen.update(kw)
        nn.Module.__init__(self)

    monkeypatch.setattr(M.DiT, "__init__", fake_init)
    getattr(M, f"dit_{size}_{patch}")(input_size=32, in_channels=4)
    d, depth, heads = PAPER[size]
    assert (seen["embed_dim"], seen["depth"], seen["num_heads"], seen["patch_size"]) == (
        d,
        depth,
        heads,
        patch,
    )


def test_small_preset_builds_and_keyword_overrides_win():
    net = M.dit_s_8(input_size=16, in_channels=1, depth=1)
    assert (net.embed_dim, net.depth, net.num_heads, net.patch_size) == (384, 1, 6, 8)
    assert net(torch.randn(2, 1, 16, 16), torch.rand(2)).shape == (2, 1, 16, 16)


def _tiny(**kw):
    torch.manual_seed(0)
    net = M.DiT(input_size=8, in_channels=2, patch_size=2, embed_dim=16, depth=2, num_heads=2, **kw)
    with torch.no_grad():  # leave the zero init so the output depends on the inputs
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def test_dit_conditioning_is_the_sum_of_t_y_and_cond():
    net = _tiny(num_classes=3)
    x, t, y = torch.randn(2, 2, 8, 8), torch.rand(2), torch.tensor([0, 2])
    c = net.t_embedder(t) + net.y_embedder(y, training=False)
    torch.testing.assert_close(net(x, t, y), net(x, cond=c))
    torch.testing.assert_close(net(x, t, cond=net.y_embedder(y, training=False)), net(x, t, y))
    assert net.null_label_id == 3  # the null class exists even without label dropout
    with pytest.raises(ValueError, match="at least one of t, y or cond"):
        net(x)
    with pytest.raises(ShapeError, match="cond_dim"):
        net(x, cond=torch.randn(2, 5))
    with pytest.raises(ValueError, match="no label embedder"):
        _tiny()(x, t, y)
    with pytest.raises(ShapeError, match="spatial size"):
        net(torch.randn(2, 2, 4, 4), t)
    # one row per sample, or one for all; another count is named (not a broadcast error)
    torch.testing.assert_close(net(x, t[:1]), net(x, t[:1].expand(2)))
    for args, name in (((torch.rand(3),), "t"), ((t, torch.tensor([0, 1, 2])), "y")):
        with pytest.raises(
            ShapeError, match=rf"{name} must have one row per sample of x \(batch 2\)"
        ):
            net(x, *args)
    with pytest.raises(ShapeError, match="cond must have one row per sample"):
        net(x, cond=torch.randn(3, net.cond_dim))


def test_dit_rectangular_inputs_and_zero_init():
    net = M.DiT(input_size=(8, 4), in_channels=1, patch_size=2, embed_dim=8, depth=1, num_heads=2)
    x = torch.randn(3, 1, 8, 4)
    out = net(x, torch.rand(3))
    assert out.shape == (3, 1, 8, 4) and out.abs().max() == 0  # AdaLN-Zero: zero field at init
    with pytest.raises(ValueError, match="divisible"):
        M.DiT(input_size=(8, 5), in_channels=1, patch_size=2, embed_dim=8, depth=1, num_heads=2)


def test_unpatchify_and_pos_embed_rectangular_grids():
    x = torch.randn(2, 3, 4, 6)
    tokens = M.patchify2d(x, 2)
    assert torch.equal(M.unpatchify2d(tokens, 2, out_channels=3, grid_size=(2, 3)), x)
    pe = M.build_2d_sincos_pos_embed(8, (2, 3))
    square = M.build_2d_sincos_pos_embed(8, 3)
    assert pe.shape == (6, 8)
    # row-major tokens: token (i, j) of the 2x3 grid equals token (i, j) of the 3x3 grid
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(pe[i * 3 + j], square[i * 3 + j])


def test_time_conditioned_mlp_both_conditionings():
    torch.manual_seed(0)
    for kind in ("adaln_zero", "concat"):
        net = M.TimeConditionedMLP(
            in_dim=3, hidden_dim=16, depth=2, conditioning=kind, num_classes=4
        )
        out = net(torch.randn(5, 3), torch.rand(5), torch.tensor([0, 1, 2, 3, 0]))
        assert out.shape == (5, 3)
    zero = M.TimeConditionedMLP(in_dim=2, hidden_dim=8)(torch.randn(4, 2), torch.rand(4))
    assert zero.abs().max() == 0  # adaln_zero head starts at zero
    with pytest.raises(ValueError, match="mlp_ratio"):
        M.TimeConditionedMLP(in_dim=2, conditioning="concat", mlp_ratio=2.0)


def test_adaln_mlp_block_is_the_identity_at_init_and_head_the_zero_map():
    blk = M.AdaLNZeroMLPBlock(embed_dim=8, cond_dim=4, act_layer=nn.SiLU)
    x = torch.randn(3, 8)
    assert torch.equal(blk(x, torch.randn(3, 4)), x)
    assert isinstance(blk.mlp.act, nn.SiLU)
    head = M.AdaLNZeroLinearHead(embed_dim=8, out_dim=2)
    assert head(x, torch.randn(3, 8)).abs().max() == 0


def test_label_embedder_null_token_and_feed_forward_act_layer():
    emb = M.LabelEmbedder(5, 4, null_token=True)
    assert emb.null_label_id == 5 and emb.embedding_table.num_embeddings == 6
    assert M.LabelEmbedder(5, 4).null_label_id is None
    with pytest.raises(ValueError, match="null_token"):
        M.LabelEmbedder(5, 4, dropout_prob=0.1, null_token=False)
    assert isinstance(M.FeedForward(8, act_layer=nn.ReLU).act, nn.ReLU)


class _Linear(nn.Module):
    """f(x, t, y) = x * (1 + y) + t: guidance has a closed form."""

    def forward(self, x, t, y):
        return x * (1 + y.float()[:, None]) + t[:, None]


def test_classifier_free_guidance_closed_form():
    x, t, y = torch.randn(4, 3), torch.rand(4), torch.tensor([1, 2, 3, 4])
    null = 0
    for w in (0.0, 1.0, 2.5):
        g = M.ClassifierFreeGuidance(_Linear(), guidance_scale=w, null_condition=null)
        cond, uncond = x * (1 + y[:, None]) + t[:, None], x + t[:, None]
        torch.testing.assert_close(g(x, t, y), uncond + w * (cond - uncond))
    g2 = M.ClassifierFreeGuidance(
        _Linear(), guidance_scale=3.0, null_condition=null, guide_channels=2
    )
    out = g2(x, t, y)
    torch.testing.assert_close(out[:, 2], x[:, 2] + t)  # unguided channel from the null output
    with pytest.raises(ValueError, match="null_condition"):
        M.ClassifierFreeGuidance(_Linear(), guidance_scale=2.0, null_condition=None)


def test_classifier_free_guidance_with_a_null_embedding_tensor():
    class Emb(nn.Module):
        def forward(self, x, t, y):
            return x + y

    x, y = torch.randn(2, 3), torch.randn(2, 3)
    g = M.ClassifierFreeGuidance(Emb(), guidance_scale=2.0, null_condition=torch.zeros(3))
    torch.testing.assert_close(g(x, torch.zeros(2), y), x + 2 * y)


def _sincos_by_hand(d: int, gh: int, gw: int) -> torch.Tensor:
    """MAE's 2-D sin-cos table in Python floats: columns in the first half, rows in the last."""
    q = d // 4
    w = [10000.0 ** (-k / q) for k in range(q)]
    rows = []
    for i in range(gh):
        for j in range(gw):
            col = [math.sin(j * v) for v in w] + [math.cos(j * v) for v in w]
            row = [math.sin(i * v) for v in w] + [math.cos(i * v) for v in w]
            rows.append(col + row)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("where", ["DiT, float64 default", "CT, float64 default", "CT, dtype"])
def test_a_float64_transformer_has_a_float64_position_table(where):
    """The fixed sin-cos table of a float64 DiT / ConditionalTransformer2D (under
    ``torch.set_default_dtype(torch.float64)``, or ``dtype=torch.float64``) was built in
    float32, its parameters in float64: a mixed model, the table rounded (~3e-8)."""
    kw = dict(input_size=8, in_channels=2, patch_size=2, embed_dim=16, depth=1, num_heads=2)
    with default_dtype(torch.float32 if where == "CT, dtype" else torch.float64):
        if where.startswith("DiT"):
            net = M.DiT(**kw)
        else:
            ct_kw = dict(kw, out_channels=2, dtype=torch.float64 if where == "CT, dtype" else None)
            net = M.ConditionalTransformer2D(**ct_kw)
    dtypes = {t.dtype for t in (*net.parameters(), *net.buffers()) if t.is_floating_point()}
    assert dtypes == {torch.float64}
    ref = _sincos_by_hand(16, 4, 4)
    torch.testing.assert_close(net.pos_embed[0], ref, rtol=0.0, atol=1e-15)


@pytest.mark.parametrize("net_kind", ["DiT", "CT"])
@pytest.mark.parametrize("convert", ["double", "to", "half", "bfloat16"])
def test_a_float32_transformer_converted_to_float64_uses_the_exact_position_table(
    net_kind, convert
):
    """Built in float32 then converted (``.double()`` / ``.to(torch.float64)``, or through
    float16 / bfloat16 with no forward in between), the fixed table kept the rounding of the
    dtypes it passed (3e-8 from float32, 2e-4 from float16); since, the first forward
    recomputes it in float64: the output equals a model built in float64 (with the same,
    rounded, weights)."""
    kw = dict(input_size=8, in_channels=2, patch_size=2, embed_dim=16, depth=1, num_heads=2)
    build = (
        M.DiT if net_kind == "DiT" else lambda **k: M.ConditionalTransformer2D(**k, out_channels=2)
    )
    torch.manual_seed(0)
    net = build(**kw)
    if convert in ("half", "bfloat16"):
        net = net.to(getattr(torch, convert))
    net = net.to(torch.float64) if convert == "to" else net.double()
    with default_dtype(torch.float64):
        ref_net = build(**kw)  # exact table (checked above against the hand-written one)
    ref_net.load_state_dict(net.state_dict())
    assert "pos_embed" not in net.state_dict()  # not in checkpoints, as in torchebm 0.8.9
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.rand(3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = net(x, t)
    torch.testing.assert_close(net.pos_embed[0], _sincos_by_hand(16, 4, 4), rtol=0.0, atol=1e-15)
    torch.testing.assert_close(out, ref_net(x, t), rtol=0.0, atol=0.0)
    # back to float32: the float64 table rounded once (not a float32 table re-rounded)
    net.float()(x.float(), t.float())
    assert torch.equal(net.pos_embed[0], _sincos_by_hand(16, 4, 4).float())


def test_a_position_table_the_user_replaced_survives_a_dtype_conversion():
    kw = dict(input_size=8, in_channels=2, patch_size=2, embed_dim=16, depth=1, num_heads=2)
    net = M.DiT(**kw)
    mine = torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(3))
    net.pos_embed = mine.clone()
    net.double()(torch.zeros(1, 2, 8, 8, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    assert torch.equal(net.pos_embed, mine.double())


@pytest.mark.slow
@pytest.mark.parametrize("net_kind", ["DiT", "CT"])
def test_a_converted_transformer_compiles_with_fullgraph(net_kind):
    """The table's data-dependent check is not traced: ``torch.compile(..., fullgraph=True)``
    of a transformer converted to float64 runs (as before the recomputed table), using the
    cast table; the eager forward then recomputes it in float64."""
    kw = dict(input_size=8, in_channels=2, patch_size=2, embed_dim=16, depth=1, num_heads=2)
    build = (
        M.DiT if net_kind == "DiT" else lambda **k: M.ConditionalTransformer2D(**k, out_channels=2)
    )
    torch.manual_seed(0)
    net = build(**kw).double()
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.rand(3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch._dynamo.reset()
    out = torch.compile(net, backend="eager", fullgraph=True)(x, t)
    torch.testing.assert_close(out, net(x, t), rtol=0.0, atol=1e-12)
    torch.testing.assert_close(net.pos_embed[0], _sincos_by_hand(16, 4, 4), rtol=0.0, atol=1e-15)


class _ParameterFreeTimeEmbedder(nn.Module):
    """A custom ``t -> (B, cond_dim)`` embedder with no parameters of its own."""

    def forward(self, t):
        return M.components.sinusoidal_embedding(t, 16)


@pytest.mark.parametrize("kind", ["dit", "mlp"])
def test_a_parameter_free_time_embedder_takes_number_times_and_float64_cond(kind):
    """Number times and a float64 ``cond`` take the model's dtype/device when the custom
    embedder has no parameter to read them from (it raised a bare StopIteration)."""
    emb = _ParameterFreeTimeEmbedder()
    if kind == "dit":
        net = M.DiT(input_size=4, in_channels=1, patch_size=2, embed_dim=16, depth=1,
                    num_heads=2, t_embedder=emb)  # fmt: skip
        x = torch.randn(3, 1, 4, 4)
    else:
        net = M.TimeConditionedMLP(in_dim=2, hidden_dim=16, depth=1, cond_dim=16, t_embedder=emb)
        x = torch.randn(3, 2)
    with torch.no_grad():  # leave the zero-initialised output
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    torch.testing.assert_close(net(x, 0.5), net(x, torch.full((3,), 0.5)))
    cond = torch.randn(3, 16, dtype=torch.float64)
    out = net(x, cond=cond)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, net(x, cond=cond.float()))


def test_sinusoidal_embedding_of_one_channel_is_one_zero_channel():
    t = torch.linspace(0, 1, 4)
    emb = M.components.sinusoidal_embedding(t, 1)
    assert emb.shape == (4, 1) and torch.equal(emb, torch.zeros(4, 1))
    out = M.components.MLPTimestepEmbedder(8, frequency_embedding_size=1)(t)
    assert out.shape == (4, 8)


def test_head_projection_is_xavier_with_zero_bias_and_head_heads_are_checked():
    """``head_proj`` is initialised as every linear of the blocks (and 0.8.9's): Xavier
    uniform weights, zero bias; a head width the head blocks' heads do not divide names the
    head arguments."""
    torch.manual_seed(0)
    net = M.DiT(input_size=4, in_channels=1, patch_size=2, embed_dim=64, depth=1,
                num_heads=2, head_dim=48, head_depth=1)  # fmt: skip
    w, bound = net.head_proj.weight, math.sqrt(6.0 / (64 + 48))
    assert torch.count_nonzero(net.head_proj.bias) == 0
    assert w.abs().max() <= bound
    # uniform(-a, a) has variance a^2 / 3; torch's default (a = 1/sqrt(64)) is far from it
    n = w.numel()
    assert abs(w.var().item() / (bound**2 / 3) - 1) < 4 * math.sqrt(2 / n) + 0.05
    with pytest.raises(ValueError, match="head_dim must be divisible by head_num_heads"):
        M.DiT(input_size=4, in_channels=1, patch_size=2, embed_dim=16, depth=1, num_heads=2,
              head_dim=12, head_num_heads=5, head_depth=1)  # fmt: skip
