"""Checkpoints saved by torchebm 0.8.9's model classes load here (strict) and give the same
outputs. The fixture is written by ``tools/make_089_model_fixtures.py`` from the 0.8.9
wheel; 0.8.9's submodule names (``modulation``, ``head``, ``patch_embed``, ...) are renamed
on load by each class's ``load_state_dict`` pre-hook."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import torchebm.models as models

FIXTURE = torch.load(Path(__file__).parent / "fixtures" / "models_089.pt", weights_only=False)
CASES = FIXTURE["cases"]


def _call(model, inputs):
    name = type(model).__name__
    if name == "LabelEmbedder":
        return model(inputs["labels"], training=False)
    if name == "DiT" and "cond" in inputs:
        return model(inputs["x"], inputs["t"], cond=inputs["cond"])
    return model(*inputs.values())


def _assert_reproduces(out: torch.Tensor, ref: torch.Tensor) -> None:
    """``out`` equals 0.8.9's ``ref`` up to float32 rounding.

    The fixture's outputs were computed by 0.8.9 on another CPU and torch: float32 kernels
    (vector width, summation order) may round each layer differently, so the bound is 64
    float32 ulps of the output's scale (1e-5 to 4e-5 here). Scaling any one weight tensor by
    1.01 moves the outputs by 3x to 500x this bound (the conditional transformer's time
    embedder aside: its outputs move by 5e-7, under the old 1e-6 bound too).
    """
    scale = max(1.0, float(ref.abs().max()))
    torch.testing.assert_close(out, ref, rtol=0, atol=64 * torch.finfo(ref.dtype).eps * scale)


@pytest.mark.parametrize("case", sorted(CASES))
def test_089_state_dict_loads_strictly_and_reproduces_outputs(case):
    spec = CASES[case]
    model = getattr(models, spec["cls"])(**spec["kwargs"]).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = model.load_state_dict(spec["state_dict"], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # every parameter and persistent buffer came from the checkpoint
    changed = [
        k for k, v in model.state_dict().items() if v.numel() and not torch.equal(v, before[k])
    ]
    assert len(changed) == len([k for k, v in before.items() if v.numel()])
    with torch.no_grad():
        out = _call(model, spec["inputs"])
    _assert_reproduces(out, spec["output"])


def test_fixture_covers_dit_and_the_conditional_transformer():
    assert FIXTURE["source"] == "torchebm 0.8.9"
    assert {"DiT", "ConditionalTransformer2D"} <= {c["cls"] for c in CASES.values()}


def test_own_state_dict_round_trips_and_foreign_keys_still_fail():
    spec = CASES["dit_labels"]
    a = models.DiT(**spec["kwargs"])
    b = models.DiT(**spec["kwargs"])
    b.load_state_dict(a.state_dict(), strict=True)
    bad = dict(spec["state_dict"])
    bad["blocks.0.bogus.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="bogus"):
        b.load_state_dict(bad, strict=True)


def test_patch_head_accepts_089_tokens_keyword():
    head = models.AdaLNZeroPatchHead(embed_dim=8, patch_size=2, out_channels=1)
    tokens, cond = torch.randn(2, 4, 8), torch.randn(2, 8)
    with pytest.warns(DeprecationWarning, match="tokens="):
        out = head(tokens=tokens, cond=cond)
    torch.testing.assert_close(out, head(tokens, cond))


@pytest.mark.parametrize("case", sorted(CASES))
def test_pickled_models_keep_loading_089_checkpoints(case):
    # the key-renaming pre-hook was a closure, so pickle.dumps and torch.save(model) failed
    import pickle

    spec = CASES[case]
    model = pickle.loads(pickle.dumps(getattr(models, spec["cls"])(**spec["kwargs"]).eval()))
    result = model.load_state_dict(spec["state_dict"], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        out = _call(model, spec["inputs"])
    _assert_reproduces(out, spec["output"])


def test_mlp_energy_pickles_after_its_explicit_gradient_ran():
    # the explicit pass's cached layer plan holds lambdas; it is dropped from the pickle
    import pickle

    model = models.MLPEnergy(2, (8, 8))
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    grad = model.gradient(x)
    copy = pickle.loads(pickle.dumps(model))
    assert torch.equal(copy(x), model(x)) and torch.equal(copy.gradient(x), grad)
