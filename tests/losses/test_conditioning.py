"""Classifier-free-guidance options (``cfg_dropout``, ``null_condition``,
``check_conditioning``) on the contrastive-divergence and score-matching losses."""

from __future__ import annotations

import math

import pytest
import torch
from _support.losses import TinyLangevin
from torch import nn

from torchebm.core import BaseModel
from torchebm.core.errors import ConfigurationError, ShapeError
from torchebm.losses import (
    ContrastiveDivergence,
    DenoisingScoreMatching,
    ScoreMatching,
    SlicedScoreMatching,
)


class LabelEnergy(BaseModel):
    """``E(x | y) = |x - mu_y|^2 / 2`` with one learnable centre per label; records ``y``."""

    def __init__(self, n_labels: int = 5):
        super().__init__()
        self.centres = nn.Parameter(torch.randn(n_labels, 2))
        self.seen: list[torch.Tensor] = []

    def forward(self, x, y=None):
        if y is None:
            y = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        self.seen.append(y.detach().clone())
        return 0.5 * (x - self.centres[y.expand(x.shape[0])]).square().sum(-1)


class IgnoresLabel(BaseModel):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x, y=None):
        return self.lin(x).squeeze(-1)


def _losses(model, **options):
    sampler = TinyLangevin(model, n_steps=1)
    return {
        "cd": ContrastiveDivergence(model, sampler, k_steps=1, **options),
        "sm": ScoreMatching(model, **options),
        "ssm": SlicedScoreMatching(model, **options),
        "dsm": DenoisingScoreMatching(model, noise_scale=0.1, **options),
    }


@pytest.mark.parametrize("name", ["cd", "sm", "ssm", "dsm"])
def test_label_dropout_fraction(name):
    n, p, null = 4000, 0.3, 4
    model = LabelEnergy()
    loss_fn = _losses(model, cfg_dropout=p, null_condition=null)[name]
    y = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(0))
    loss_fn(torch.randn(n, 2), model_kwargs={"y": y}, generator=torch.Generator().manual_seed(1))
    # sliced score matching repeats the batch once per projection: (k * n,) labels
    batch_calls = [s for s in model.seen if s.numel() >= n and s.numel() % n == 0]
    assert batch_calls, "the model never saw the batch's labels"
    seen = batch_calls[-1].reshape(-1, n)
    dropped = seen[0] == null
    frac = dropped.double().mean().item()
    assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n)
    # every copy agrees, and labels that are not dropped are the caller's labels
    assert all(torch.equal(row, seen[0]) for row in seen)
    assert torch.equal(seen[0][~dropped], y[~dropped])


@pytest.mark.parametrize("name", ["cd", "sm", "ssm", "dsm"])
def test_no_dropout_in_eval_mode(name):
    n = 256
    model = LabelEnergy()
    loss_fn = _losses(model, cfg_dropout=0.5, null_condition=4)[name].eval()
    y = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(0))
    loss_fn(torch.randn(n, 2), model_kwargs={"y": y}, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(s, y) for s in model.seen if s.shape == (n,))


@pytest.mark.parametrize("name", ["cd", "sm", "ssm", "dsm"])
def test_check_conditioning_rejects_a_model_that_ignores_y(name):
    loss_fn = _losses(IgnoresLabel())[name]
    with pytest.raises(ConfigurationError, match="ignores its conditioning"):
        loss_fn(torch.randn(8, 2), model_kwargs={"y": torch.arange(8) % 3})
    # and the check can be switched off
    loss_fn = _losses(IgnoresLabel(), check_conditioning=False)[name]
    out = loss_fn(torch.randn(8, 2), model_kwargs={"y": torch.arange(8) % 3})
    loss = out[0] if isinstance(out, tuple) else out
    assert torch.isfinite(loss)


class ZeroShift(BaseModel):
    """``E(x | y) = |x|^2 / 2 + <b_y, x>`` with a zero-initialised label embedding ``b``."""

    def __init__(self):
        super().__init__()
        self.shift = nn.Embedding(3, 2)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x, y):
        return 0.5 * x.square().sum(-1) + (self.shift(y) * x).sum(-1)


@pytest.mark.parametrize("name", ["cd", "sm", "ssm", "dsm"])
def test_a_zero_initialised_label_branch_passes_the_conditioning_check(name):
    # same output for every y at initialisation, and the gradients' sums and squared sums
    # are the same too (row y of the embedding gets x): refused as "ignores its conditioning"
    out = _losses(ZeroShift())[name](torch.randn(8, 2), model_kwargs={"y": torch.arange(8) % 3})
    loss = out[0] if isinstance(out, tuple) else out
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", ["cd", "sm", "ssm", "dsm"])
def test_labels_need_one_entry_per_sample(name):
    # the conditioning of every loss call is built in one place (flows' loss_conditioning):
    # a label tensor of another batch size is named before the model sees it
    loss_fn = _losses(LabelEnergy())[name]
    with pytest.raises(ShapeError, match=r"y must have one entry per sample of x \(batch 8\)"):
        loss_fn(torch.randn(8, 2), model_kwargs={"y": torch.arange(5) % 3})


def test_the_conditioning_check_refuses_a_float16_model_that_ignores_y():
    # the position ramp in float16 overflowed past 65504 gradient entries (inf, NaN): the
    # NaN statistics never compared equal, so a model ignoring y passed the check
    class Big(BaseModel):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.full((70000,), 1e-3))

        def forward(self, x, y=None):
            return (x.square().sum(-1, keepdim=True) * self.w[:2].sum()).squeeze(-1)

    model = Big().half()
    loss_fn = DenoisingScoreMatching(model, noise_scale=0.1, dtype=torch.float16)
    with pytest.raises(ConfigurationError, match="ignores its conditioning"):
        loss_fn(torch.randn(8, 2).half(), model_kwargs={"y": torch.arange(8) % 3})


class ReadsPrompts(BaseModel):
    """``E(x | y) = |x|^2 / 2 + len(y_i) x_1``: per-sample conditioning that is not a tensor
    (or, as a reference, a tensor of the lengths)."""

    def forward(self, x, y):
        if isinstance(y, dict):
            y = y["prompt"]
        elif isinstance(y, tuple):
            y = y[0]
        if isinstance(y, torch.Tensor):
            return 0.5 * x.square().sum(-1) + y.to(x.dtype) * x[:, 0]
        shift = torch.tensor([float(len(p)) for p in y], dtype=x.dtype)
        return 0.5 * x.square().sum(-1) + shift * x[:, 0]


@pytest.mark.parametrize("name", ["sm", "ssm", "dsm"])
@pytest.mark.parametrize("kind", ["list", "dict", "group"])
def test_conditioning_that_is_not_labels_skips_the_check_with_a_warning(name, kind):
    # text prompts, a dict or a (prompts, mask) group: the check cannot compare rows of y, so
    # it warns once (naming the type and the switch) instead of failing in torch.as_tensor;
    # sliced score matching tiles the prompts with the batch (the loss equals the loss with
    # the lengths as a tensor, which it tiled before)
    prompts = ["a", "bb", "ccc", "dddd"]
    y = {"list": prompts, "dict": {"prompt": prompts}, "group": (prompts, torch.ones(4))}[kind]
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    reference = _losses(ReadsPrompts())[name](
        x,
        model_kwargs={"y": torch.tensor([1, 2, 3, 4])},
        generator=torch.Generator().manual_seed(1),
    )
    loss_fn = _losses(ReadsPrompts())[name]
    with pytest.warns(UserWarning, match=r"has a (list|dict|tuple) y, so the check .* skipped"):
        loss = loss_fn(x, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss, reference, rtol=0, atol=0)
    assert not loss_fn.conditioning.pending  # checked once: the next call does not warn again


class ReadsPromptsOrLengths(ReadsPrompts):
    """`ReadsPrompts` that also reads a numpy array of the lengths."""

    def forward(self, x, y):
        if type(y).__module__ == "numpy":
            y = torch.as_tensor(y)
        return super().forward(x, y)


@pytest.mark.parametrize("name", ["sm", "sm_approx", "ssm", "ssm_1", "dsm"])
@pytest.mark.parametrize("kind", ["list", "dict", "group", "numpy"])
def test_non_tensor_conditioning_on_the_approx_path_and_as_a_numpy_array(name, kind):
    # `test_conditioning_that_is_not_labels_skips_the_check_with_a_warning` extended: the
    # "approx" Hessian of ScoreMatching (which tiles the batch twice) and SSM with one
    # projection (which tiles nothing), and a numpy array of the lengths: the loss equals the
    # loss with the lengths as a tensor
    import warnings

    import numpy as np

    prompts = ["a", "bb", "ccc", "dddd"]
    y = {
        "list": prompts,
        "dict": {"prompt": prompts},
        "group": (prompts, torch.ones(4)),
        "numpy": np.array([1, 2, 3, 4]),
    }[kind]

    def make():
        model = ReadsPromptsOrLengths()
        if name == "sm_approx":
            return ScoreMatching(model, hessian_method="approx")
        if name == "ssm_1":
            return SlicedScoreMatching(model, n_projections=1)
        return _losses(model)[name]

    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    reference = make()(
        x,
        model_kwargs={"y": torch.tensor([1, 2, 3, 4])},
        generator=torch.Generator().manual_seed(1),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the skipped check (tested above)
        loss = make()(x, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss, reference, rtol=0, atol=0)


def test_a_list_of_per_sample_tensors_is_refused_only_when_it_is_tiled():
    # a list of B token tensors of length B is ambiguous (one value per sample, or a group of
    # per-sample values) only when it must be tiled: SSM with one projection tiles nothing and
    # runs (before: refused, though the parent commit ran it); two projections still refuse
    class ReadsTokens(BaseModel):
        def forward(self, x, y):
            c = torch.stack([t.to(x.dtype).sum() for t in y]) if isinstance(y, list) else y
            return 0.5 * x.square().sum(-1) + c.to(x.dtype) * x[:, 0]

    b = 4
    tokens = [torch.arange(b) + i for i in range(b)]
    sums = torch.stack([t.sum() for t in tokens])
    x = torch.randn(b, 2, generator=torch.Generator().manual_seed(0))
    losses = [
        SlicedScoreMatching(ReadsTokens(), n_projections=1, check_conditioning=False)(
            x, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(1)
        )
        for y in (tokens, sums)
    ]
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    two = SlicedScoreMatching(ReadsTokens(), n_projections=2, check_conditioning=False)
    with pytest.raises(ConfigurationError, match="cannot be told from a group"):
        two(x, model_kwargs={"y": tokens}, generator=torch.Generator().manual_seed(1))
