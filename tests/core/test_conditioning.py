"""`torchebm.core.Conditioning`: the classifier-free-guidance label dropout."""

from __future__ import annotations

import torch
from _support.dtypes import default_dtype

from torchebm.core import Conditioning


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
