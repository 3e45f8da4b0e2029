"""ConditionalTransformer2D: shapes, zero output at init, conditioning forms, gradient flow."""

from __future__ import annotations

import pytest
import torch

from torchebm.models import ConditionalTransformer2D


def make(**kw):
    cfg = dict(
        in_channels=2,
        out_channels=3,
        input_size=8,
        patch_size=2,
        embed_dim=32,
        depth=2,
        num_heads=4,
    )
    cfg.update(kw)
    return ConditionalTransformer2D(**cfg)


def test_shapes_and_zero_output_at_init():
    torch.manual_seed(0)
    net = make()
    x = torch.randn(5, 2, 8, 8)
    out = net(x, torch.rand(5))
    assert out.shape == (5, 3, 8, 8)
    assert torch.equal(out, torch.zeros_like(out))
    assert net.num_patches == 16 and net.pos_embed.shape == (1, 16, 32)
    # fixed position embedding is a non-persistent buffer
    assert "pos_embed" not in net.state_dict()
    assert not any(n == "pos_embed" for n, _ in net.named_parameters())
    # every block starts as the identity: zero-initialised AdaLN modulations
    for blk in net.blocks:
        assert torch.count_nonzero(blk.adaLN_modulation[-1].weight) == 0
    assert torch.count_nonzero(net.final_layer.linear.weight) == 0


def test_conditioning_forms_agree():
    torch.manual_seed(0)
    net = make()
    with torch.no_grad():  # make the output depend on the conditioning
        net.final_layer.linear.weight.normal_(std=0.1)
        net.final_layer.adaLN_modulation[-1].weight.normal_(std=0.1)
    x = torch.randn(4, 2, 8, 8)
    t = torch.full((4,), 0.3)
    ref = net(x, t)
    for c in (0.3, torch.tensor(0.3), t[:, None], torch.tensor([0.3])):
        torch.testing.assert_close(net(x, c), ref)
    torch.testing.assert_close(net(x, t=t), ref)
    torch.testing.assert_close(net(x, cond=t), ref)
    # a (B, cond_dim) vector is used as is: equal to passing the embedded time
    vec = net.t_embedder(t)
    torch.testing.assert_close(net(x, vec), ref)
    assert not torch.allclose(net(x, torch.full((4,), 0.9)), ref)


def test_labels_and_cond_dim():
    torch.manual_seed(0)
    net = make(cond_dim=24, num_classes=5, class_dropout_prob=0.1)
    assert net.null_label_id == 5
    with torch.no_grad():
        net.final_layer.linear.weight.normal_(std=0.1)
        net.final_layer.adaLN_modulation[-1].weight.normal_(std=0.1)
    net.eval()
    x = torch.randn(3, 2, 8, 8)
    y = torch.tensor([0, 1, 4])
    out = net(x, torch.rand(3), y=y)
    assert out.shape == (3, 3, 8, 8)
    only_labels = net(x, y=y)
    torch.testing.assert_close(only_labels, net(x, net.y_embedder(y, training=False)))
    assert not torch.allclose(net(x, y=torch.tensor([5, 5, 5])), only_labels)


def test_errors():
    with pytest.raises(ValueError, match="divisible by patch_size"):
        make(input_size=9)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        make(num_heads=5)
    with pytest.raises(ValueError, match="divisible by 4"):
        make(embed_dim=30, num_heads=3)
    net = make()
    x = torch.randn(2, 2, 8, 8)
    with pytest.raises(ValueError, match="needs conditioning"):
        net(x)
    with pytest.raises(ValueError, match="once"):
        net(x, torch.rand(2), t=torch.rand(2))
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(2, 2, 6, 6), torch.rand(2))
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(2, 1, 8, 8), torch.rand(2))
    with pytest.raises(ValueError, match="conditioning must be"):
        net(x, torch.rand(3))
    with pytest.raises(ValueError, match="conditioning must be"):
        net(x, torch.rand(2, 7))
    with pytest.raises(ValueError, match="num_classes"):
        net(x, torch.rand(2), y=torch.tensor([0, 1]))
    no_time = make(time_embedding=False)
    with pytest.raises(ValueError, match="time_embedding"):
        no_time(x, torch.rand(2))
    assert no_time(x, torch.randn(2, 32)).shape == (2, 3, 8, 8)


def test_gradient_flow_reaches_every_parameter():
    """Zero-initialised gates block most gradients at step 0; a few steps open every path."""
    torch.manual_seed(0)
    net = make(depth=2, num_classes=3)
    x = torch.randn(8, 2, 8, 8)
    t, y = torch.rand(8), torch.randint(0, 3, (8,))
    target = torch.randn(8, 3, 8, 8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    reached: set[str] = set()
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = (net(x, t, y=y) - target).pow(2).mean()
        loss.backward()
        losses.append(loss.item())
        reached |= {
            n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0
        }
        opt.step()
    names = {n for n, _ in net.named_parameters()}
    assert reached == names, names - reached
    assert losses[-1] < losses[0]


def _swap_patches(img, a, b, p=2):
    """``img`` with the ``p x p`` patches at grid cells ``a`` and ``b`` (row, col) swapped."""
    out = img.clone()
    (ra, ca), (rb, cb) = a, b
    pa = (..., slice(ra * p, ra * p + p), slice(ca * p, ca * p + p))
    pb = (..., slice(rb * p, rb * p + p), slice(cb * p, cb * p + p))
    out[pa], out[pb] = img[pb], img[pa]
    return out


@pytest.mark.parametrize("sincos", [False, True])
def test_without_position_embedding_the_patches_are_permutation_equivariant(sincos):
    """``use_sincos_pos_embed=False`` adds no position embedding (torchebm 0.8.9): the same
    parameters as with the fixed table (0.8.9 optimizer states index them by position), and
    with nothing to tell the tokens apart, swapping two input patches swaps the same two
    output patches. The sin-cos table breaks that symmetry (the check can fail)."""
    torch.manual_seed(0)
    net = make(use_sincos_pos_embed=sincos, dtype=torch.float64)
    assert [n for n, _ in net.named_parameters()] == [
        n for n, _ in make(use_sincos_pos_embed=True).named_parameters()
    ]
    assert (net.pos_embed is None) is not sincos
    with torch.no_grad():  # leave the zero-initialised (identity) start
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, t = torch.randn(3, 2, 8, 8, dtype=torch.float64), torch.rand(3, dtype=torch.float64)
    swapped_out = net(_swap_patches(x, (0, 1), (2, 3)), t)
    out_swapped = _swap_patches(net(x, t), (0, 1), (2, 3))
    gap = (swapped_out - out_swapped).abs().max().item()
    scale = out_swapped.abs().max().item()
    assert scale > 1e-3
    if sincos:
        assert gap > 1e-3 * scale
    else:
        assert gap < 1e-12 * scale


def test_with_cond_dim_1_a_column_is_the_vector_and_flat_times_are_embedded():
    """With ``cond_dim=1`` a ``(B, 1)`` tensor is the conditioning vector, by position or as
    ``t=`` (torchebm 0.8.9's meaning: its ``t`` was ``cond``'s alias); ``(B,)`` times are
    embedded."""
    torch.manual_seed(0)
    net = make(cond_dim=1)
    with torch.no_grad():  # leave the zero-initialised output
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, t = torch.randn(2, 2, 8, 8), torch.tensor([0.25, 0.75])
    vector = net(x, t[:, None])
    torch.testing.assert_close(net(x, t=t[:, None]), vector)
    assert not torch.allclose(net(x, t), vector)
    net.t_embedder = None  # the vector form needs no embedder
    torch.testing.assert_close(net(x, t=t[:, None]), vector)


def test_dtype_of_the_table_and_the_output():
    net64 = make(dtype=torch.float64)
    assert net64.dtype == torch.float64 and net64.pos_embed.dtype == torch.float64
    out = net64(torch.randn(2, 2, 8, 8, dtype=torch.float64), torch.rand(2, dtype=torch.float64))
    assert out.dtype == torch.float64
    net32 = make().double()
    assert net32(torch.randn(1, 2, 8, 8, dtype=torch.float64), 0.5).dtype == torch.float64


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward():
    net = make(num_classes=3).cuda()
    x = torch.randn(4, 2, 8, 8, device="cuda")
    out = net(x, torch.rand(4, device="cuda"), y=torch.tensor([0, 1, 2, 0], device="cuda"))
    assert out.device.type == "cuda" and out.shape == (4, 3, 8, 8)
    assert net(x, 0.5).device.type == "cuda"


def test_class_dropout_without_labels_is_refused():
    """A label dropout with no label embedder would be silently unused (DiT refuses it too)."""
    from torchebm.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="class_dropout_prob=0.3 needs num_classes"):
        make(class_dropout_prob=0.3)
    assert make(num_classes=3, class_dropout_prob=0.3).null_label_id == 3
    assert make(class_dropout_prob=0.0).y_embedder is None
