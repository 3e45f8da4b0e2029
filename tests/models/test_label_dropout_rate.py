"""A conditional model built with class_dropout_prob=p drops each label to the null class
with probability p in training mode (and never in eval mode), measured through forward().

Reference: Bernoulli(p) frequency; n = 20000 rows, sd = sqrt(p(1-p)/n) = 0.0032 at p = 0.3,
tolerance 4 sd (0.013): a 10 % error in the rate (0.27) is 9 sd away; no dropout is 90 sd away."""

import math

import pytest
import torch

from torchebm.models import ConditionalTransformer2D, DiT, TimeConditionedMLP

P, N = 0.3, 20000


def _flat(a):
    return a.reshape(a.shape[0], -1)


def _null_fraction(net, x, t, y, null):
    net.eval()
    with torch.no_grad():
        cond, uncond = net(x, t, y=y), net(x, t, y=torch.full_like(y, null))
    assert (_flat(cond) - _flat(uncond)).abs().amax(1).min() > 1e-6  # the label matters
    net.train()
    torch.manual_seed(0)
    with torch.no_grad():
        out = _flat(net(x, t, y=y))
    is_null = (out - _flat(uncond)).abs().amax(1) < 1e-6
    is_cond = (out - _flat(cond)).abs().amax(1) < 1e-6
    assert bool((is_null ^ is_cond).all())  # each row is exactly one of the two
    return is_null.double().mean().item()


def _perturb(net):  # AdaLN-Zero starts at a zero field: give every weight a value
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


@pytest.mark.parametrize("conditioning", ["adaln_zero", "concat"])
def test_time_conditioned_mlp_drops_labels_at_rate_p(conditioning):
    torch.manual_seed(0)
    net = _perturb(
        TimeConditionedMLP(
            in_dim=2,
            hidden_dim=16,
            depth=1,
            num_classes=3,
            class_dropout_prob=P,
            conditioning=conditioning,
        )
    )
    x, t, y = torch.randn(N, 2), torch.rand(N), torch.zeros(N, dtype=torch.long)
    frac = _null_fraction(net, x, t, y, null=net.y_embedder.null_label_id)
    assert abs(frac - P) < 4 * math.sqrt(P * (1 - P) / N), frac


# the sizes both image models share: 4 x 4 one-channel images in 2 x 2 patches
IMAGE = {"input_size": 4, "patch_size": 2, "embed_dim": 16, "depth": 1, "num_heads": 2}


def _dit():
    return DiT(in_channels=1, num_classes=3, class_dropout_prob=P, **IMAGE)


def _transformer():
    return ConditionalTransformer2D(
        in_channels=1, out_channels=1, cond_dim=16, num_classes=3, class_dropout_prob=P, **IMAGE
    )


@pytest.mark.parametrize("build", [_dit, _transformer], ids=["dit", "conditional_transformer"])
def test_image_models_drop_labels_at_rate_p(build):
    torch.manual_seed(0)
    net = _perturb(build())
    n = 4000  # costlier models: sd 0.0072, a 10 % rate error is 4.1 sd
    x, t, y = torch.randn(n, 1, 4, 4), torch.rand(n), torch.zeros(n, dtype=torch.long)
    frac = _null_fraction(net, x, t, y, null=net.y_embedder.null_label_id)
    assert abs(frac - P) < 3 * math.sqrt(P * (1 - P) / n), frac
