r"""DiT and TimeConditionedMLP forwards against hand-written references (papers' formulas).

Every parameter is redrawn at random (the zero-initialised modulation and head layers
too), so that the order of the six AdaLN chunks, ``modulate``'s ``1 + scale``, the gates,
the position table and the patch layout all show in the output. References, written out
here without the library's helpers:

* the sinusoidal time features of DiT (Peebles & Xie 2023, ``timestep_embedding``):
  $f_k = 10000^{-k/h}$, $h = \lfloor d/2 \rfloor$, ``[cos(t f), sin(t f)]``;
* the 2-D sin-cos position table of MAE (He et al. 2022, ``get_2d_sincos_pos_embed``), in
  numpy: the first half of the channels encodes the column, ``[sin, cos]`` of $p\,\omega_k$,
  $\omega_k = 10000^{-k/(D/4)}$;
* patches read and written by explicit loops over the token grid (token ``i * gw + j``,
  channels ordered ``(row in patch, column in patch, channel)``);
* the AdaLN-Zero block with ``(shift, scale, gate)`` for attention then for the MLP, LayerNorm
  without affine (eps 1e-6), softmax attention, tanh-GELU.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from torchebm.models import DiT, TimeConditionedMLP
from torchebm.models.components import LabelEmbedder, MLPTimestepEmbedder

F64 = torch.float64


def time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    f = np.exp(-math.log(10000.0) * np.arange(half) / half)
    a = t.numpy()[:, None] * f[None, :]
    return torch.from_numpy(np.concatenate([np.cos(a), np.sin(a)], axis=1))


def mae_table(embed_dim: int, gh: int, gw: int) -> torch.Tensor:
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(gw, dtype=np.float64), np.arange(gh, dtype=np.float64))
    grid = np.stack(grid, axis=0).reshape(2, 1, gh, gw)  # grid[0]: column, grid[1]: row
    emb = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], 1)
    return torch.from_numpy(emb)


def layer_norm(x):
    mu = x.mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + 1e-6)


def linear(layer, x):
    return x @ layer.weight.T + layer.bias


def chunks(modulation, c, n):
    out = linear(modulation[1], c * torch.sigmoid(c))  # SiLU then Linear
    return [out[:, k * out.shape[1] // n : (k + 1) * out.shape[1] // n] for k in range(n)]


def mlp(ff, x):
    return linear(ff.fc2, F.gelu(linear(ff.fc1, x), approximate="tanh"))


def attention(attn, x, heads):
    b, n, d = x.shape
    dh = d // heads
    qkv = linear(attn.qkv, x)
    q, k, v = (qkv[..., i * d : (i + 1) * d].reshape(b, n, heads, dh) for i in range(3))
    w = torch.softmax(torch.einsum("bnhe,bmhe->bhnm", q, k) / math.sqrt(dh), dim=-1)
    return linear(attn.proj, torch.einsum("bhnm,bmhe->bnhe", w, v).reshape(b, n, d))


def dit_block(blk, x, c, heads):
    s1, g1, a1, s2, g2, a2 = (v[:, None, :] for v in chunks(blk.adaLN_modulation, c, 6))
    x = x + a1 * attention(blk.attn, layer_norm(x) * (1 + g1) + s1, heads)
    return x + a2 * mlp(blk.mlp, layer_norm(x) * (1 + g2) + s2)


def reference_dit(net, x, t, y, heads):
    b, ch, h, w = x.shape
    p = net.patch_size
    gh, gw = h // p, w // p
    wc, bc = net.x_embedder.proj.weight, net.x_embedder.proj.bias
    tokens = torch.stack(
        [
            torch.einsum("bcuv,dcuv->bd", x[:, :, i * p : (i + 1) * p, j * p : (j + 1) * p], wc)
            + bc
            for i in range(gh)
            for j in range(gw)
        ],
        dim=1,
    )
    tokens = tokens + mae_table(net.embed_dim, gh, gw)
    temb = net.t_embedder.mlp
    c = linear(temb[2], F.silu(linear(temb[0], time_features(t, temb[0].in_features))))
    c = c + net.y_embedder.embedding_table.weight[y]
    for blk in net.blocks:
        tokens = dit_block(blk, tokens, c, heads)
    head = net.final_layer
    shift, scale = (v[:, None, :] for v in chunks(head.adaLN_modulation, c, 2))
    out_tok = linear(head.linear, layer_norm(tokens) * (1 + scale) + shift)
    oc = net.out_channels
    img = torch.zeros(b, oc, h, w, dtype=F64)
    for i in range(gh):
        for j in range(gw):
            for r in range(p):
                for q in range(p):
                    for k in range(oc):
                        img[:, k, i * p + r, j * p + q] = out_tok[
                            :, i * gw + j, (r * p + q) * oc + k
                        ]
    return img


def randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for prm in module.parameters():
            prm.copy_(0.3 * torch.randn(prm.shape, generator=g, dtype=prm.dtype))
    return module


def test_dit_forward_matches_the_written_out_dit():
    heads = 2
    net = DiT(
        input_size=(4, 6),
        in_channels=2,
        out_channels=3,
        patch_size=2,
        embed_dim=16,
        depth=2,
        num_heads=heads,
        num_classes=5,
    )
    net = randomise(net.double(), 0).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 4, 6, dtype=F64, generator=g)
    t = torch.tensor([0.1, 0.5, 0.93], dtype=F64)
    y = torch.tensor([0, 4, 2])
    got = net(x, t, y)
    torch.testing.assert_close(got, reference_dit(net, x, t, y, heads), rtol=1e-10, atol=1e-10)


def test_time_conditioned_mlp_matches_the_written_out_adaln_mlp():
    net = TimeConditionedMLP(in_dim=3, out_dim=2, hidden_dim=8, depth=2, mlp_ratio=2.0)
    net = randomise(net.double(), 2)
    x = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    t = torch.linspace(0.05, 0.95, 5, dtype=F64)
    temb = net.t_embedder.mlp
    c = linear(temb[2], F.silu(linear(temb[0], time_features(t, temb[0].in_features))))
    h = linear(net.stem, x)
    for blk in net.blocks:
        shift, scale, gate = chunks(blk.adaLN_modulation, c, 3)
        h = h + gate * mlp(blk.mlp, layer_norm(h) * (1 + scale) + shift)
    shift, scale = chunks(net.head.adaLN_modulation, c, 2)
    want = linear(net.head.linear, layer_norm(h) * (1 + scale) + shift)
    torch.testing.assert_close(net(x, t), want, rtol=1e-10, atol=1e-10)


def test_label_dropout_rate_and_target_in_training():
    """Dropped labels go to the null id ``num_classes``, a fraction ``p`` of them: 5 standard
    errors of a binomial fraction at n = 100000 is 0.007, below 5% of 0.3 (0.015)."""
    n, k, p = 100_000, 7, 0.3
    emb = LabelEmbedder(k, 4, dropout_prob=p)
    labels = torch.arange(n) % k
    out = emb.maybe_drop_labels(labels, generator=torch.Generator().manual_seed(0))
    changed = out != labels
    assert bool((out[changed] == k).all())
    assert abs(changed.double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_embedders_are_drawn_with_the_documented_standard_deviation():
    """N(0, 0.02^2) weights (DiT's initialisation): the sample std of m entries is within
    5 relative standard errors, 5 / sqrt(2 m), of 0.02 (a 5% error fails)."""
    torch.manual_seed(0)
    table = LabelEmbedder(1000, 64).embedding_table.weight
    mlp = MLPTimestepEmbedder(256).mlp
    for w in (table, mlp[0].weight, mlp[2].weight):
        assert abs(w.std().item() / 0.02 - 1) < 5 / math.sqrt(2 * w.numel())
        assert abs(w.mean().item()) < 5 * 0.02 / math.sqrt(w.numel())
    assert not mlp[0].bias.any() and not mlp[2].bias.any()
