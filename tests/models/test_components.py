"""Building blocks of torchebm.models.components against closed forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _support.dtypes import default_dtype

import torchebm.models as M
from torchebm.models.components import (
    AdaLNZeroBlock,
    AdaLNZeroPatchHead,
    ConvPatchEmbed2d,
    FeedForward,
    LabelEmbedder,
    MLPTimestepEmbedder,
    MultiheadSelfAttention,
    build_2d_sincos_pos_embed,
    modulate,
    patchify2d,
    unpatchify2d,
)


def test_components_reexported():
    import torchebm.models.components as C

    spec = {
        "MLPTimestepEmbedder",
        "LabelEmbedder",
        "build_2d_sincos_pos_embed",
        "ConvPatchEmbed2d",
        "patchify2d",
        "unpatchify2d",
        "FeedForward",
        "MultiheadSelfAttention",
        "AdaLNZeroBlock",
        "AdaLNZeroPatchHead",
        "modulate",
    }
    assert spec <= set(C.__all__)
    for name in C.__all__:
        assert getattr(M, name) is getattr(C, name)
        assert name in M.__all__


# ---------------------------------------------------------------------------- embeddings
def test_sinusoidal_embedding_closed_form():
    t = torch.tensor([0.0, 0.5, 3.0])
    dim, period = 6, 100.0
    emb = MLPTimestepEmbedder.sinusoidal_embedding(t, dim, max_period=period)
    freqs = torch.tensor([period ** (-k / 3) for k in range(3)])
    expected = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], 1)
    assert emb.shape == (3, 6)
    torch.testing.assert_close(emb, expected)
    odd = MLPTimestepEmbedder.sinusoidal_embedding(t, 7, max_period=period)
    torch.testing.assert_close(odd[:, :6], expected)
    assert torch.equal(odd[:, 6], torch.zeros(3))


def test_timestep_embedder_shapes_and_init():
    emb = MLPTimestepEmbedder(16, frequency_embedding_size=32)
    assert emb(torch.rand(5)).shape == (5, 16)
    assert emb(torch.rand(5, 1)).shape == (5, 16)
    assert emb(torch.tensor(0.3)).shape == (1, 16)
    w = emb.mlp[0].weight
    assert abs(w.std().item() - 0.02) < 0.004  # N(0, 0.02^2) init, 512 weights
    assert emb.double()(torch.rand(3, dtype=torch.float64)).dtype == torch.float64


def test_label_embedder_dropout_and_null_class():
    emb = LabelEmbedder(10, 8, dropout_prob=0.5)
    assert emb.embedding_table.num_embeddings == 11 and emb.null_label_id == 10
    labels = torch.arange(10).repeat(100)
    # not training, no mask: labels untouched
    torch.testing.assert_close(emb(labels, training=False), emb.embedding_table(labels))
    # forced mask drops exactly the masked labels
    mask = labels % 2 == 0
    out = emb.maybe_drop_labels(labels, force_drop_mask=mask)
    assert torch.equal(out, torch.where(mask, torch.full_like(labels, 10), labels))
    # random drops with a generator: rate ~ 0.5 and reproducible
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    d1 = emb.maybe_drop_labels(labels, generator=g1)
    d2 = emb.maybe_drop_labels(labels, generator=g2)
    assert torch.equal(d1, d2)
    rate = (d1 == 10).double().mean().item()
    assert abs(rate - 0.5) < 5 * math.sqrt(0.25 / labels.numel())
    no_null = LabelEmbedder(10, 8)
    assert no_null.embedding_table.num_embeddings == 10 and no_null.null_label_id is None
    assert no_null(labels, training=True).shape == (1000, 8)  # no dropout without null class
    with pytest.raises(RuntimeError, match="null class"):
        no_null(labels, training=False, force_drop_mask=mask)
    with pytest.raises(TypeError):
        emb(torch.rand(3), training=False)


def test_label_dropout_mask_does_not_follow_the_default_dtype():
    """``maybe_drop_labels`` with a generator drops the same labels after
    ``torch.set_default_dtype(torch.float64)`` (float32 uniforms, as in a float32 run)."""
    emb, labels = LabelEmbedder(10, 8, dropout_prob=0.5), torch.arange(1000) % 10
    u = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    expected = torch.where(u < 0.5, 10, labels)
    state = torch.get_rng_state()
    with default_dtype(torch.float64):
        wide = emb.maybe_drop_labels(labels, generator=torch.Generator().manual_seed(0))
        trained = emb(labels, training=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(wide, expected)
    assert torch.equal(trained, emb.embedding_table(expected))
    assert torch.equal(torch.get_rng_state(), state)


def test_2d_sincos_pos_embed_values():
    d, g = 8, 3
    pe = build_2d_sincos_pos_embed(d, g)
    assert pe.shape == (9, 8) and pe.dtype == torch.float32
    omega = torch.tensor([1.0, 1.0 / 100.0])  # 1/10000^(k/(D/4)), D/4 = 2

    def axis(p):
        return torch.cat([torch.sin(p * omega), torch.cos(p * omega)])

    for i in range(g):
        for j in range(g):
            expected = torch.cat([axis(float(j)), axis(float(i))])
            torch.testing.assert_close(pe[i * g + j], expected)
    assert build_2d_sincos_pos_embed(8, 2, dtype=torch.float64).dtype == torch.float64
    for bad in (7, 6, 2):
        with pytest.raises(ValueError, match="embed_dim"):
            build_2d_sincos_pos_embed(bad, 4)


# ---------------------------------------------------------------------------- patches
@pytest.mark.parametrize("c, size, p", [(1, 4, 2), (3, 8, 4), (2, 6, 3), (4, 8, 1)])
def test_patchify_unpatchify_round_trip(c, size, p):
    x = torch.randn(2, c, size, size)
    tokens = patchify2d(x, p)
    assert tokens.shape == (2, (size // p) ** 2, p * p * c)
    assert torch.equal(unpatchify2d(tokens, p, out_channels=c), x)
    t = torch.randn_like(tokens)
    assert torch.equal(patchify2d(unpatchify2d(t, p, out_channels=c), p), t)


def test_patchify_layout():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    tokens = patchify2d(x, 2)
    # token 1 is the top-right patch; channels ordered (row, col, channel)
    patch = x[0, :, 0:2, 2:4]  # (C, p, p)
    assert torch.equal(tokens[0, 1], patch.permute(1, 2, 0).reshape(-1))
    assert torch.equal(tokens[0, 2], x[0, :, 2:4, 0:2].permute(1, 2, 0).reshape(-1))


def test_patch_errors():
    with pytest.raises(ValueError, match="divisible"):
        patchify2d(torch.zeros(1, 1, 5, 4), 2)
    with pytest.raises(ValueError):
        patchify2d(torch.zeros(1, 4, 4), 2)
    with pytest.raises(ValueError, match="token dimension"):
        unpatchify2d(torch.zeros(1, 4, 7), 2, out_channels=2)
    with pytest.raises(ValueError, match="perfect square"):
        unpatchify2d(torch.zeros(1, 3, 8), 2, out_channels=2)


def test_conv_patch_embed_is_linear_map_of_patches():
    torch.manual_seed(0)
    emb = ConvPatchEmbed2d(in_channels=3, embed_dim=5, patch_size=2)
    with torch.no_grad():
        emb.proj.bias.normal_()
    x = torch.randn(2, 3, 6, 6)
    out = emb(x)
    assert out.shape == (2, 9, 5)
    w = emb.proj.weight.permute(0, 2, 3, 1).reshape(5, -1)  # (D, p, q, C) as patchify orders
    torch.testing.assert_close(out, patchify2d(x, 2) @ w.T + emb.proj.bias, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="channels"):
        emb(torch.zeros(1, 2, 6, 6))
    with pytest.raises(ValueError, match="divisible"):
        emb(torch.zeros(1, 3, 5, 6))


# ---------------------------------------------------------------------------- transformer
def test_modulate():
    x = torch.randn(2, 3, 4)
    shift, scale = torch.randn(2, 4), torch.randn(2, 4)
    torch.testing.assert_close(modulate(x, shift, scale), x * (1 + scale[:, None]) + shift[:, None])


def test_attention_matches_manual_softmax():
    torch.manual_seed(0)
    attn = MultiheadSelfAttention(8, 2)
    x = torch.randn(3, 5, 8)
    qkv = attn.qkv(x).reshape(3, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(4), dim=-1)
    manual = attn.proj((w @ v).transpose(1, 2).reshape(3, 5, 8))
    torch.testing.assert_close(attn(x), manual, atol=1e-5, rtol=1e-5)
    # permutation equivariance over tokens
    perm = torch.randperm(5)
    torch.testing.assert_close(attn(x[:, perm]), attn(x)[:, perm], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiheadSelfAttention(10, 3)


def test_feedforward():
    ff = FeedForward(8, mlp_ratio=2.0)
    x = torch.randn(2, 3, 8)
    assert ff.fc1.out_features == 16
    torch.testing.assert_close(ff(x), ff.fc2(F.gelu(ff.fc1(x), approximate="tanh")))


def test_adaln_zero_block_identity_at_init_then_conditioned():
    torch.manual_seed(0)
    blk = AdaLNZeroBlock(embed_dim=8, num_heads=2, cond_dim=6)
    x, c = torch.randn(2, 5, 8), torch.randn(2, 6)
    assert torch.equal(blk(x, c), x)
    with torch.no_grad():
        blk.adaLN_modulation[-1].weight.normal_()
    y = blk(x, c)
    assert not torch.allclose(y, x)
    # the modulation makes the block depend on the conditioning
    assert not torch.allclose(blk(x, torch.randn(2, 6)), y)
    with pytest.raises(ValueError, match="cond"):
        blk(x, torch.randn(2, 8))


def test_adaln_block_custom_submodules():
    attn, mlp = torch.nn.Identity(), torch.nn.Identity()
    blk = AdaLNZeroBlock(embed_dim=8, num_heads=3, attn=attn, mlp=mlp)
    assert blk.attn is attn and blk.mlp is mlp


def test_patch_head_zero_at_init():
    head = AdaLNZeroPatchHead(embed_dim=8, cond_dim=4, patch_size=2, out_channels=3)
    out = head(torch.randn(2, 16, 8), torch.randn(2, 4))
    assert out.shape == (2, 3, 8, 8)
    assert torch.equal(out, torch.zeros_like(out))
    with torch.no_grad():
        head.linear.weight.normal_()
    assert head(torch.randn(2, 16, 8), torch.randn(2, 4)).abs().sum() > 0


def test_adaln_block_and_head_name_tokens_of_the_wrong_width():
    # torch's LayerNorm error named neither x nor the width
    from torchebm.core.errors import ShapeError

    blk = AdaLNZeroBlock(embed_dim=16, num_heads=2, cond_dim=6)
    head = AdaLNZeroPatchHead(embed_dim=16, cond_dim=6, patch_size=2, out_channels=3)
    for module in (blk, head):
        with pytest.raises(
            ShapeError, match=r"x must be tokens of shape \(B, N, 16\), got \(2, 4, 15\)"
        ):
            module(torch.randn(2, 4, 15), torch.randn(2, 6))
        with pytest.raises(ShapeError, match=r"got \(2, 16\)"):
            module(torch.randn(2, 16), torch.randn(2, 6))
    assert blk(torch.randn(2, 4, 16), torch.randn(2, 6)).shape == (2, 4, 16)


def test_2d_sincos_pos_embed_refuses_an_integer_dtype():
    # torch.int32 truncated every sin/cos to an integer ([0, 0, 0, 0, 0, 0, 1, 1]), silently
    with pytest.raises(TypeError, match="dtype must be a floating-point torch.dtype"):
        build_2d_sincos_pos_embed(8, 2, dtype=torch.int32)
