"""``TimeConditionedMLP(conditioning="concat", cond_dim=0)``: torchebm 0.8.9's unconditional,
time-invariant field (``t`` accepted and ignored), whose checkpoints load."""

from __future__ import annotations

import pytest
import torch

from torchebm.core.errors import ConfigurationError
from torchebm.models import TimeConditionedMLP

# the state dict torchebm 0.8.9 saves for in_dim=2, hidden_dim=8, depth=2 (printed by 0.8.9)
STATE_089 = [("net.0.weight", (8, 2)), ("net.0.bias", (8,)), ("net.2.weight", (8, 8)),
             ("net.2.bias", (8,)), ("net.4.weight", (2, 8)), ("net.4.bias", (2,))]  # fmt: skip


def _field():
    return TimeConditionedMLP(in_dim=2, hidden_dim=8, depth=2, conditioning="concat", cond_dim=0)


def test_it_has_0_8_9_state_dict_and_loads_one_strictly():
    # the constructor raised "cond_dim must be >= 1, got 0", and 0.8.9 pickles of it failed
    field = _field()
    assert [(k, tuple(v.shape)) for k, v in field.state_dict().items()] == STATE_089
    state = {k: torch.randn(s, generator=torch.Generator().manual_seed(i))
             for i, (k, s) in enumerate(STATE_089)}  # fmt: skip
    fresh = _field()
    fresh.load_state_dict(state, strict=True)
    x = torch.randn(5, 2)
    h = torch.nn.functional.silu(x @ state["net.0.weight"].T + state["net.0.bias"])
    h = torch.nn.functional.silu(h @ state["net.2.weight"].T + state["net.2.bias"])
    torch.testing.assert_close(
        fresh(x, torch.rand(5)), h @ state["net.4.weight"].T + state["net.4.bias"]
    )


def test_time_is_ignored_labels_are_refused_and_it_trains():
    field, x = _field(), torch.randn(16, 2)
    assert torch.equal(field(x, torch.zeros(16)), field(x, torch.rand(16)))
    assert torch.equal(field(x), field(x, torch.rand(16)))
    with pytest.raises(ConfigurationError, match="built unconditional \\(cond_dim=0\\)"):
        field(x, torch.rand(16), y=torch.zeros(16, dtype=torch.long))
    field(x, torch.rand(16)).square().sum().backward()  # as a loss that passes t trains it
    assert field.net[0].weight.grad.abs().sum() > 0
    with pytest.raises(ConfigurationError, match="takes no num_classes"):
        TimeConditionedMLP(in_dim=2, conditioning="concat", cond_dim=0, num_classes=3)
    with pytest.raises(ConfigurationError, match="cond_dim must be >= 1"):
        TimeConditionedMLP(in_dim=2, cond_dim=0)  # adaln_zero needs a conditioning vector


def test_the_adaln_stem_starts_xavier_uniform_with_a_zero_bias_as_in_0_8_9():
    # it was left at PyTorch's default (weights up to 0.5 for in_dim=4, bias std 0.29);
    # 0.8.9 and DiT's vector stream use Xavier-uniform linears with zero biases
    torch.manual_seed(0)
    stem = TimeConditionedMLP(in_dim=4, hidden_dim=64, depth=2).stem
    bound = (6 / (4 + 64)) ** 0.5
    w = stem.weight.detach()
    assert w.abs().max() <= bound and torch.equal(stem.bias, torch.zeros(64))
    # uniform on [-bound, bound]: variance bound^2 / 3, within 5 standard errors of 256 draws
    assert abs(float(w.var()) - bound**2 / 3) < 5 * (bound**2 / 3) * (0.8 / 256) ** 0.5
