"""Models built on the meta device, a Python-number time in a float64 model, the guidance
wrapper's label-dropout warning and EqMEnergy's fixed time (independent references: the
same model built on the CPU, a float64 tensor time)."""

from __future__ import annotations

import warnings

import pytest
import torch

from torchebm.core.errors import ConfigurationError
from torchebm.models import (
    ClassifierFreeGuidance,
    ConditionalTransformer2D,
    DiT,
    EqMEnergy,
    MLPVelocity,
    TimeConditionedMLP,
)

F64 = torch.float64
SMALL_DIT = dict(input_size=8, in_channels=2, embed_dim=32, depth=1, num_heads=4)
SMALL_CT = dict(
    in_channels=1, out_channels=1, input_size=8, patch_size=2, embed_dim=32, depth=1, num_heads=4
)


def _randomised(model):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # adaLN-zero starts at 0: make every layer count
            p.copy_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def test_a_dit_built_on_the_meta_device_computes_its_position_table_after_to_empty():
    # the sin-cos table is a non-persistent buffer: to_empty() left uninitialised memory
    # and load_state_dict did not restore it (outputs NaN or off by 1e34, silently)
    trained = _randomised(DiT(**SMALL_DIT))
    with torch.device("meta"):
        lazy = DiT(**SMALL_DIT)
    lazy.to_empty(device="cpu")
    lazy.pos_embed.fill_(float("nan"))  # uninitialised memory holds anything (the freed table)
    lazy.load_state_dict(trained.state_dict())
    x, t = torch.randn(2, 2, 8, 8), torch.rand(2)
    assert torch.equal(lazy(x, t), trained(x, t))
    assert torch.equal(lazy.pos_embed, trained.pos_embed)


def test_a_conditional_transformer_built_with_device_meta_computes_its_table_after_to_empty():
    trained = _randomised(ConditionalTransformer2D(**SMALL_CT))
    lazy = ConditionalTransformer2D(**SMALL_CT, device="meta")
    lazy.to_empty(device="cpu")
    lazy.pos_embed.fill_(float("nan"))  # uninitialised memory holds anything (the freed table)
    lazy.load_state_dict(trained.state_dict())
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    assert torch.equal(lazy(x, t), trained(x, t))


@pytest.mark.parametrize(
    "make,x",
    [
        (
            lambda: DiT(input_size=8, in_channels=1, embed_dim=32, depth=1, num_heads=4),
            (2, 1, 8, 8),
        ),
        (lambda: ConditionalTransformer2D(**SMALL_CT), (2, 1, 8, 8)),
        (lambda: TimeConditionedMLP(in_dim=2, hidden_dim=16, depth=2), (2, 2)),
    ],
)
def test_a_number_time_keeps_float64_in_a_float64_model(make, x):
    # 999.7 was made a float32 tensor first (999.70001): 4e-6 off in a float64 DiT
    net = _randomised(make().double())
    z = torch.randn(x, dtype=F64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(net(z, 999.7), net(z, torch.full((x[0],), 999.7, dtype=F64)))


def test_classifier_free_guidance_warns_while_its_model_drops_labels():
    net = DiT(**{**SMALL_DIT, "in_channels": 1}, num_classes=3, class_dropout_prob=0.5)
    guided = ClassifierFreeGuidance(net, guidance_scale=2.0, null_condition=3)
    x, t, y = torch.randn(4, 1, 8, 8), torch.rand(4), torch.tensor([0, 1, 2, 0])
    with pytest.warns(RuntimeWarning, match="training mode and drops labels.*eval"):
        guided(x, t, y)
    guided.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        guided(x, t, y)


def test_eqm_energy_names_a_time_in_model_kwargs():
    energy = EqMEnergy(MLPVelocity(2))
    x = torch.randn(3, 2)
    with pytest.raises(ConfigurationError, match="t = 0.*must not hold 't'"):
        energy(x, t=torch.full((3,), 0.5))
    with pytest.raises(ConfigurationError, match="must not hold 't'"):
        energy.gradient(x, model_kwargs={"t": torch.full((3,), 0.5)})


def test_vmap_over_labels_gives_the_per_sample_jacobians():
    # the label range check read a value (bool(bad.any())): every label-conditioned model
    # failed under torch.func.vmap ("data-dependent control flow")
    from torch.func import jacrev, vmap

    net = _randomised(TimeConditionedMLP(in_dim=2, hidden_dim=16, depth=2, num_classes=3))
    net = net.double()
    gen = torch.Generator().manual_seed(4)
    x, t = torch.randn(4, 2, dtype=F64, generator=gen), torch.rand(4, dtype=F64, generator=gen)
    y = torch.tensor([0, 1, 2, 1])
    per_sample = vmap(jacrev(lambda a, b, c: net(a[None], b[None], c[None])[0]))(x, t, y)
    for i in range(4):
        ref = torch.autograd.functional.jacobian(
            lambda a, i=i: net(a[None], t[i : i + 1], y[i : i + 1])[0], x[i]
        )
        torch.testing.assert_close(per_sample[i], ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(ConfigurationError, match="class ids"):  # outside vmap: still named
        net(x, t, torch.tensor([0, 1, 5, 1]))


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # torch: sdpa under vmap
@pytest.mark.parametrize("kind", ["dit", "conditional"])
def test_an_ensemble_of_converted_transformers_runs_under_vmap(kind):
    """Models converted to float64 before any forward, stacked with `stack_module_state`:
    the first forward's check of the position table (`torch.equal`) raised "Batching rule
    not implemented for aten::equal" under vmap. Each member must give its own forward's
    output, to the float32 rounding of the table it was built with (under vmap the table is
    used as cast; an eager forward rebuilds it in float64: ~3e-8 apart)."""
    import copy

    from torch.func import functional_call, stack_module_state, vmap

    torch.manual_seed(0)
    make = (
        (lambda: DiT(**SMALL_DIT))
        if kind == "dit"
        else (lambda: ConditionalTransformer2D(**SMALL_CT))
    )
    members = [make().to(F64).eval() for _ in range(2)]
    with torch.no_grad():  # adaLN-zero heads output 0: give every member its own weights
        for i, member in enumerate(members):
            gen = torch.Generator().manual_seed(i)
            for p in member.parameters():
                p.copy_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    channels = SMALL_DIT["in_channels"] if kind == "dit" else SMALL_CT["in_channels"]
    x = torch.randn(3, channels, 8, 8, dtype=F64)
    t = torch.rand(3, dtype=F64)
    params, buffers = stack_module_state(members)
    base = copy.deepcopy(members[0])
    stacked = vmap(lambda p, b: functional_call(base, (p, b), (x, t)))(params, buffers)
    outputs = [member(x, t) for member in members]
    assert (outputs[0] - outputs[1]).abs().max() > 0.1  # two different, non-zero members
    for i, output in enumerate(outputs):
        torch.testing.assert_close(stacked[i], output, rtol=1e-6, atol=1e-6)
