"""The time / conditioning inputs reach the network on the paths the existing tests skip:
MLPVelocity(n_time_frequencies=0) feeds [x, t] (docs: "0 gives t alone"), and
TimeConditionedMLP(conditioning="concat") is "a plain MLP on [x, c]" with
c = t_embedder(t) (+ y_embedder(y))."""

import torch

from torchebm.models import MLPVelocity, TimeConditionedMLP

F64 = torch.float64


def test_velocity_without_frequencies_feeds_x_then_t():
    torch.manual_seed(2)
    field = MLPVelocity(2, (16,), n_time_frequencies=0, dtype=F64)
    x = torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    t = torch.linspace(0.0, 1.0, 6, dtype=F64)
    want = field.net(torch.cat([x, t[:, None]], 1))
    torch.testing.assert_close(field(x, t), want, rtol=1e-12, atol=1e-12)
    assert (field(x, t) - field(x, torch.zeros_like(t))).abs().max() > 1e-6  # t matters


def test_concat_conditioning_feeds_x_then_c():
    torch.manual_seed(0)
    net = (
        TimeConditionedMLP(in_dim=3, hidden_dim=16, depth=2, conditioning="concat", num_classes=4)
        .double()
        .eval()
    )
    x = torch.randn(5, 3, dtype=F64)
    t, y = torch.rand(5, dtype=F64), torch.tensor([0, 1, 2, 3, 0])
    c = net.t_embedder(t) + net.y_embedder(y, training=False)
    want = net.net(torch.cat([x, c], -1))
    torch.testing.assert_close(net(x, t, y=y), want, rtol=1e-12, atol=1e-12)
    assert (net(x, t, y=y) - net(x, t, y=(y + 1) % 4)).abs().max() > 1e-6  # y matters
