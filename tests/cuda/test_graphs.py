"""graphed_loop on CPU: the plain-loop fallback, its checks, and a compiled step agreeing."""

import math

import pytest
import torch

import torchebm.cuda as tc
from torchebm.core import HarmonicModel
from torchebm.core.errors import ConfigurationError


def _langevin_step(gen):
    model = HarmonicModel(k=2.0)

    def step(x):
        return tc.fused_langevin_step(x, model.gradient(x), 0.05, generator=gen)

    return step


def test_cpu_fallback_is_the_plain_loop():
    x0 = torch.randn(8, 3)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    out = tc.graphed_loop(_langevin_step(g1), x0, 25, generator=g1)
    ref = x0
    step = _langevin_step(g2)
    for _ in range(25):
        ref = step(ref)
    assert torch.equal(out, ref)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_tuple_state_and_zero_steps():
    x, v = torch.ones(3), torch.zeros(3)

    def step(state):
        x, v = state
        return x + 0.5 * v, v - 0.5 * x

    a, b = tc.graphed_loop(step, (x, v), 4)
    ra, rb = x, v
    for _ in range(4):
        ra, rb = step((ra, rb))
    assert torch.equal(a, ra) and torch.equal(b, rb)
    assert tc.graphed_loop(step, (x, v), 0) == (x, v)
    # each explicit step of this rotation multiplies the squared norm by 1 + 1/4
    assert math.isclose((a**2 + b**2).sum().item(), 3 * 1.25**4, rel_tol=1e-6)


def test_a_list_state_comes_back_a_list():
    # a list state came back as a tuple (and step_fn got a tuple), unlike the tensor and tuple
    seen = []

    def step(state):
        seen.append(type(state))
        x, v = state
        return [x + 0.5 * v, v - 0.5 * x]

    out = tc.graphed_loop(step, [torch.ones(3), torch.zeros(3)], 3)
    assert type(out) is list and seen == [list] * 3
    ref = (torch.ones(3), torch.zeros(3))
    for _ in range(3):
        ref = step(list(ref))
    assert all(torch.equal(a, b) for a, b in zip(out, ref))
    assert type(tc.graphed_loop(step, [torch.ones(3), torch.zeros(3)], 0)) is list


def test_errors():
    x = torch.zeros(3)
    with pytest.raises(ConfigurationError, match="step_fn must return a state"):
        tc.graphed_loop(lambda s: s[:2], x, 3)
    with pytest.raises(ConfigurationError, match="step_fn must return a state"):
        tc.graphed_loop(lambda s: s.double(), x, 3)
    with pytest.raises(TypeError, match="state must be a tensor"):
        tc.graphed_loop(lambda s: s, [1.0], 3)
    with pytest.raises(ValueError, match="n_steps must be >= 0"):
        tc.graphed_loop(lambda s: s, x, -1)
    with pytest.raises(ValueError, match="warmup_steps must be >= 1"):
        tc.graphed_loop(lambda s: s, x, 3, warmup_steps=0)
    with pytest.raises(ConfigurationError, match="needs every state tensor on a CUDA device"):
        tc.graphed_loop(lambda s: s, x, 3, enabled=True)


@pytest.mark.slow
def test_compiled_eager_step_agrees_with_eager_for_supplied_noise():
    # the eager fallback is traceable by torch.compile without graph breaks (fullgraph=True)
    model = HarmonicModel(k=2.0)

    def step(x, eps):
        return tc.fused_langevin_step(x, model.gradient(x), 0.05, 0.8, clamp=(-3, 3), noise=eps)

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=gen)
    for _ in range(3):
        eps = torch.randn(16, 4, generator=gen)
        a, b = step(x, eps), compiled(x, eps)
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
        x = a


def test_which_generator_is_registered_with_the_graph(monkeypatch):
    # decided before any CUDA work, so it can be checked without a GPU
    from torchebm.cuda import _graphs

    class Gen:  # stands in for a torch.Generator on a CUDA device
        def __init__(self, index):
            self.device = torch.device("cuda", index) if index is not None else torch.device("cuda")

    default0, default1 = Gen(0), Gen(1)
    monkeypatch.setattr(torch.cuda, "default_generators", (default0, default1))
    dev1 = torch.device("cuda", 1)
    assert _graphs._generator_to_register(None, dev1) is None
    assert _graphs._generator_to_register(torch.Generator(), dev1) is None  # CPU generator
    assert _graphs._generator_to_register(default1, dev1) is None  # graph-safe already
    mine = Gen(1)
    assert _graphs._generator_to_register(mine, dev1) is mine
    assert _graphs._generator_to_register(Gen(None), dev1) is not None  # index from the state

    class OldGraph:  # torch < 2.5 has no register_generator_state
        pass

    monkeypatch.setattr(torch.cuda, "CUDAGraph", OldGraph)
    with pytest.raises(ConfigurationError, match="torch >= 2.5"):
        _graphs._generator_to_register(mine, dev1)
    assert _graphs._generator_to_register(default1, dev1) is None
