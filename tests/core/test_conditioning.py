"""`torchebm.core.Conditioning`: the classifier-free-guidance label dropout."""

from __future__ import annotations

import pytest
import torch
from _support.dtypes import default_dtype

from torchebm.core import Conditioning
from torchebm.core.errors import ConfigurationError


def test_cfg_dropout_mask_does_not_follow_the_default_dtype():
    """A generator seed drops the same labels after ``torch.set_default_dtype(torch.float64)``
    (the uniforms were drawn in the default dtype: float64 draws, another mask), the labels
    ``torch.rand(n, generator=g) < p`` gives in float32, and the global RNG is not used."""
    cond, y = Conditioning(0.5, null_condition=-1), torch.arange(256)

    def drop():
        out = cond.drop({"y": y}, training=True, generator=torch.Generator().manual_seed(0))
        return out["y"]

    expected = torch.where(torch.rand(256, generator=torch.Generator().manual_seed(0)) < 0.5, -1, y)
    state = torch.get_rng_state()
    with default_dtype(torch.float64):
        wide = drop()
    assert torch.equal(drop(), expected) and torch.equal(wide, expected)
    assert 0 < int((expected == -1).sum()) < 256
    assert torch.equal(torch.get_rng_state(), state)


def test_cfg_dropout_nulls_a_cond_vector_when_no_y_is_given():
    # before: DiT's vector conditioning (cond=) was never dropped: cfg_dropout=0.5 with a
    # tensor null_condition trained no unconditional branch, without a word
    from torchebm.core import Conditioning

    n, rate = 4000, 0.5
    drop = Conditioning(cfg_dropout=rate, null_condition=torch.zeros(3))
    cond = torch.randn(n, 3) + 3.0  # never all-zero by chance
    out = drop.drop({"cond": cond}, training=True, generator=torch.Generator().manual_seed(0))
    nulled = (out["cond"] == 0).all(dim=1)
    kept = (out["cond"] == cond).all(dim=1)
    assert bool((nulled | kept).all())
    assert abs(nulled.float().mean().item() - rate) < 4 * (rate * (1 - rate) / n) ** 0.5
    both = drop.drop({"y": torch.zeros(n, 3) + 1, "cond": cond}, training=True)
    assert both["cond"] is cond  # with y given, y is the one dropped
    assert drop.drop({"cond": cond}, training=False)["cond"] is cond


def test_the_conditioning_probe_restores_each_submodules_mode():
    # the probe ran model.eval() then model.train(), which flipped a backbone the user had
    # frozen in eval mode back to training (its BatchNorm statistics then moved)
    class Owner:
        def __init__(self, model):
            self.model = model

    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4))
    model.train()
    model[1].eval()
    before = model[1].running_mean.clone()
    probed_in_eval = []

    def probe(kwargs):
        probed_in_eval.append(not model.training and not model[1].training)
        return model(torch.ones(1, 2)) * kwargs["y"].float()

    Conditioning().check(probe, {"y": torch.tensor([0, 1, 2])}, Owner(model))
    assert probed_in_eval == [True, True]
    assert model.training and not model[1].training
    assert torch.equal(model[1].running_mean, before)


def test_the_conditioning_probe_runs_train_overrides_when_it_restores():
    # restoring by attribute writes skipped a submodule's train() override (a flag it keeps
    # in step with the mode stayed at its eval value)
    class Owner:
        def __init__(self, model):
            self.model = model

    class Fusing(torch.nn.Linear):
        fused = False

        def train(self, mode=True):
            self.fused = not mode
            return super().train(mode)

    model = torch.nn.Sequential(Fusing(2, 1))
    model.train()

    def probe(kwargs):
        return model(torch.ones(1, 2)) * kwargs["y"].float()

    Conditioning().check(probe, {"y": torch.tensor([0, 1])}, Owner(model))
    assert model[0].training and not model[0].fused


def _probed_kwargs(kwargs: dict) -> list[dict]:
    """The keyword arguments the conditioning check gave its two probes."""

    class Owner:
        model = None

    seen: list[dict] = []

    def probe(probed):
        seen.append(probed)
        if len(probed["prompts"]) != len(probed["y"]):
            raise ValueError("one prompt per row")
        return probed["y"].float() + len(probed["prompts"][0])

    cond = Conditioning()
    cond.check(probe, kwargs, Owner())
    assert not cond.pending and len(seen) == 2
    return seen


def test_the_conditioning_probe_cuts_every_per_sample_value_to_its_row():
    # only tensors were cut to the probed row: a list of B prompts beside the labels kept B
    # items, and every loss's first call failed inside the check (0-d tensors failed to slice)
    scale, group, opts = torch.tensor(2.0), (torch.ones(3), torch.zeros(3)), {"size": [1, 2, 3]}
    kwargs = {"y": torch.tensor([0, 1, 2]), "prompts": ["a", "bb", "ccc"], "table": torch.ones(5)}
    seen = _probed_kwargs({**kwargs, "scale": scale, "group": group, "opts": opts})
    assert [s["prompts"] for s in seen] == [["a"], ["a"]]
    assert [s["y"].tolist() for s in seen] == [[0], [1]]
    for s in seen:  # not per-sample: kept as they are
        assert s["scale"] is scale and s["group"] is group and s["opts"] is opts
        assert s["table"] is kwargs["table"]  # leading size 5, not the batch's 3


def test_the_conditioning_probe_cuts_a_numpy_array_to_its_row():
    np = pytest.importorskip("numpy")
    kwargs = {"y": torch.tensor([0, 1, 2]), "prompts": ["a", "bb", "ccc"], "mask": np.ones((3, 4))}
    assert [s["mask"].shape for s in _probed_kwargs(kwargs)] == [(1, 4), (1, 4)]


def test_cfg_dropout_of_a_list_y_needs_a_callable_null_condition():
    # a list y (prompts) failed with a bare AttributeError on y.shape, even with a callable
    # null_condition that nulls a list; now its mask has len(y) rows drawn as a tensor y's
    prompts = [f"p{i}" for i in range(64)]

    def null(y, mask):
        return ["" if m else p for p, m in zip(y, mask.tolist())]

    cond = Conditioning(0.5, null_condition=null)
    out = cond.drop({"y": prompts}, training=True, generator=torch.Generator().manual_seed(0))
    drawn = torch.rand(64, generator=torch.Generator().manual_seed(0)) < 0.5
    assert out["y"] == ["" if m else p for p, m in zip(prompts, drawn.tolist())]
    assert 0 < out["y"].count("") < 64
    for y, null_condition in ((prompts, 0), ({"text": prompts}, null)):
        with pytest.raises(
            ConfigurationError, match=rf"cfg_dropout=0.5 .* got a {type(y).__name__} y"
        ):
            Conditioning(0.5, null_condition=null_condition).drop({"y": y}, training=True)
