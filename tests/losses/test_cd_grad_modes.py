"""Contrastive divergence as a validation loss under ``torch.no_grad()`` /
``torch.inference_mode()`` (parallel tempering's tempered model differentiates through its
inverse temperatures), and a persistent replay buffer after only the model changed dtype."""

from __future__ import annotations

import pytest
import torch
from _support.losses import TinyLangevin
from torch import nn

from torchebm.core import TorchEBMModule
from torchebm.losses import ParallelTemperingCD, PersistentContrastiveDivergence

F64 = torch.float64


class PlainQuadratic(nn.Module):
    """E = a/2 |x|^2 as a plain module: the tempered model differentiates it by autograd."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.8, dtype=F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.a * x.square().sum(-1)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_parallel_tempering_cd_value_equals_grad_mode(context):
    def run(ctx):
        model = PlainQuadratic()
        loss = ParallelTemperingCD(
            model, TinyLangevin(model, step_size=0.05), temperatures=(1.0, 2.0, 4.0),
            k_steps=4, dtype=F64,
        )  # fmt: skip
        x = torch.randn(16, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
        with ctx():
            value, neg = loss(x, generator=torch.Generator().manual_seed(1))
        return value, neg, loss.tempered_chains

    ref, ref_neg, ref_chains = run(torch.enable_grad)
    value, neg, chains = run(context)
    assert value.grad_fn is None and not value.requires_grad
    # the same draws from the same seed: the same negatives, chains and loss
    torch.testing.assert_close(neg, ref_neg, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chains, ref_chains, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(value, ref.detach(), rtol=1e-12, atol=1e-12)


class Shift(TorchEBMModule):
    """A deterministic 'sampler': each step adds ``delta`` to every chain."""

    def __init__(self, model: nn.Module, delta: float) -> None:
        super().__init__()
        self.model, self.delta = model, delta

    def sample(self, x=None, n_steps=1, *, model_kwargs=None, generator=None):
        return x + self.delta * n_steps


def test_replay_buffer_follows_the_model_dtype():
    # a float32 loss whose model is then moved to float64 alone (loss.model.double()): the
    # chains continue in float64. A step of 1e-10 is below float32's resolution at |x| ~ 1
    # (6e-8), so a buffer left in float32 loses every step.
    model = PlainQuadratic().float()
    delta = 1e-10
    loss = PersistentContrastiveDivergence(
        model, Shift(model, delta), k_steps=1, buffer_size=4, new_sample_ratio=0.0
    )
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    loss(x, generator=torch.Generator().manual_seed(1))
    start = loss.replay_buffer.clone().double()  # buffer_size == batch: rows in order
    loss.model.double()
    assert loss.dtype == F64
    for k in (1, 2, 3):
        _, neg = loss(x.double(), generator=torch.Generator().manual_seed(1 + k))
        assert neg.dtype == F64
        assert loss.replay_buffer.dtype == F64
        expected = start
        for _ in range(k):  # the same float64 additions the chains made
            expected = expected + delta
        torch.testing.assert_close(loss.replay_buffer, expected, rtol=0, atol=0)
    assert loss.buffer_age.device == loss.replay_buffer.device


@pytest.mark.parametrize("init_steps", [0, 3])
def test_a_replay_buffer_made_under_inference_mode_trains_afterwards(init_steps):
    # a first call as a validation loss under inference_mode made the buffer and its ages
    # inference tensors: the next training call failed in the buffer update ("Inplace update
    # to inference tensor outside InferenceMode is not allowed")
    model = PlainQuadratic()
    loss = PersistentContrastiveDivergence(
        model, Shift(model, 0.25), k_steps=2, buffer_size=16, init_steps=init_steps, dtype=F64
    )
    x = torch.randn(8, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        loss(x, generator=torch.Generator().manual_seed(1))
    assert not loss.replay_buffer.is_inference() and not loss.buffer_age.is_inference()
    before = loss.replay_buffer.clone()
    value, _ = loss(x, generator=torch.Generator().manual_seed(2))
    value.backward()
    assert model.a.grad is not None and torch.isfinite(model.a.grad)
    assert not torch.equal(loss.replay_buffer, before)  # the training call updated it
